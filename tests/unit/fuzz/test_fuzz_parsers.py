"""Fuzzing every parser that reads text from outside (issue 13): no crash, only a quarantine
reason or a clear error.

Default runs are short (``MEDFORGE_FUZZ_EXAMPLES``, default 40 inputs per target). The long run
that docs/reliability.md quotes is ``bench/fuzz_parsers.py`` (same tests, more examples, and a
count of the inputs each target was given, written to ``MEDFORGE_FUZZ_REPORT``).
"""

from __future__ import annotations

import json
import os
import string
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MEDFORGE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("MEDFORGE_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("MEDFORGE_FUZZ_REPORT")
    if path:
        old = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
        for k, v in TRIED.items():
            old[k] = old.get(k, 0) + v
        Path(path).write_text(json.dumps(old, indent=2, sort_keys=True))


# --------------------------------------------------------------------------- strategies
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
                           max_leaves=20)
TASK_KEYS = ["type", "topic", "view", "difficulty", "instruction", "input", "tasks", "explanation", "answer",
             "overall_context", "option_contexts", "preliminary_answer", "A", "B", "C", "D"]
task_like = st.dictionaries(st.sampled_from(TASK_KEYS), json_values | st.text(max_size=80), max_size=8)
structured = st.one_of(
    task_like.map(json.dumps),
    st.lists(task_like, max_size=4).map(json.dumps),
    st.fixed_dictionaries({"tasks": st.lists(task_like, max_size=4)}).map(json.dumps),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
)


@st.composite
def mangled(draw, base):
    """A reply that was cut, spliced or had bytes of noise put in (truncation is the common real fault)."""
    text = draw(base)
    op = draw(st.integers(0, 3))
    if op == 0 and text:
        return text[: draw(st.integers(0, len(text)))]
    if op == 1:
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(max_size=20)) + text[at:]
    if op == 2:
        return draw(st.sampled_from(["```json\n", "Sure! ", "###\n", "\ufeff", ""])) + text + draw(
            st.sampled_from(["```", "\n###", "\x00", "\ud800", ""]))
    return text


replies = st.one_of(st.text(max_size=400), mangled(structured), mangled(st.text(alphabet=string.printable, max_size=300)),
                    st.lists(st.sampled_from(["1. Type: x", "Instruction: y", "Input: <noinput>", "###", "Topic:",
                                              "Overall context:", "A: ctx", "Preliminary answer: B", "The answer is (A)."]),
                             max_size=12).map("\n".join))


# --------------------------------------------------------------------------- teacher replies
@FUZZ
@given(text=replies, structured_flag=st.booleans())
def test_instruction_reply_parser(text, structured_flag):
    from medforge.generate.instruction_task import format_output

    TRIED["instruction_task.format_output"] += 1
    tasks, reasons = format_output(text, structured_flag)
    assert isinstance(tasks, list) and isinstance(reasons, list)
    assert tasks or reasons, "a reply that yields nothing must say why"
    for t in tasks:
        for k in ("type", "topic", "view", "difficulty", "instruction", "input"):
            assert isinstance(t[k], str)
    assert all(isinstance(r, str) and r for r in reasons)


@FUZZ
@given(text=replies, structured_flag=st.booleans(), mc=st.booleans())
def test_response_reply_parser(text, structured_flag, mc):
    from medforge.generate.response_task import format_output

    TRIED["response_task.format_output"] += 1
    task = {"id": "t", "type": "multiple-choice question" if mc else "open-ended question", "topic": "x", "view": "x",
            "difficulty": "3", "instruction": "Which?", "input": "A. a\nB. b\nC. c" if mc else "<noinput>"}
    out, reason = format_output(task, text, structured_flag)
    assert (out is None) != (reason == ""), (out, reason)
    assert out is None or isinstance(out, str)


@FUZZ
@given(text=replies, letters=st.lists(st.sampled_from("ABCDEFGHIJ"), min_size=2, max_size=5, unique=True))
def test_context_reply_parser(text, letters):
    from medforge.contexts.task import format_output

    TRIED["contexts.task.format_output"] += 1
    parsed, reason = format_output(text, letters)
    assert (parsed is None) != (reason == "")
    if parsed is not None:
        assert set(parsed["option_contexts"]) == set(letters) and parsed["preliminary_answer"] in letters


@FUZZ
@given(body=json_values)
def test_openai_reply_parser(body):
    from medforge.engines.openai_client import parse_chat_reply

    TRIED["engines.openai_client.parse_chat_reply"] += 1
    try:
        out = parse_chat_reply(body)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(out["generated_text"], str) and out["engine_error"] == ""


# --------------------------------------------------------------------------- config
yaml_texts = st.one_of(
    st.text(max_size=200),
    st.dictionaries(st.sampled_from(["seed", "engine", "budget", "output", "ray_num_cpus", "generation", "x"]),
                    json_values, max_size=5).map(lambda d: json.dumps(d, allow_nan=True)),
    st.sampled_from(["teacher:\n  kind: vllm\n  model: [", "- a\n- b", "{{", "a: !!python/object:os.system x",
                     "budget: {target_tasks: -1}", "\t\tkey: x", "seed: .nan", "output:\n  dir: ''"]),
)
overrides = st.lists(st.one_of(
    st.text(max_size=30),
    st.tuples(st.sampled_from(["seed", "budget.target_tasks", "engine.model", "output.dir", "a.b.c", "budget",
                               "engine.kind", "generation.sampling.temperature", "ray_num_cpus"]),
              st.text(max_size=20)).map(lambda kv: f"{kv[0]}={kv[1]}"),
), max_size=4)


@FUZZ
@given(text=yaml_texts, ov=overrides)
def test_config_loader_and_overrides(tmp_path_factory, text, ov):
    from medforge.config.base import ConfigError, load_config
    from medforge.generate.config import GenerateConfig

    TRIED["config.load_config"] += 1
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(GenerateConfig, path, ov)
    except ConfigError as exc:
        assert str(exc).strip()


@FUZZ
@given(ov=overrides)
def test_dotted_overrides_on_a_shipped_config(ov):
    from medforge.config.base import ConfigError, load_config
    from medforge.generate.config import GenerateConfig

    TRIED["config.parse_overrides"] += 1
    cfg = Path(__file__).parents[3] / "configs" / "generate" / "local_tiny.yaml"
    try:
        load_config(GenerateConfig, cfg, ov)
    except ConfigError as exc:
        assert str(exc).strip()


# --------------------------------------------------------------------------- JSONL and MCQ readers
mcq_records = st.one_of(
    json_values,
    st.fixed_dictionaries({"question": json_values | st.text(max_size=60),
                           "options": st.dictionaries(st.text(max_size=3), json_values | st.text(max_size=20), max_size=6)
                           | st.lists(json_values | st.text(max_size=20), max_size=6) | json_values},
                          optional={"answer": json_values, "answer_idx": json_values, "id": json_values}),
    st.fixed_dictionaries({"question": st.text(max_size=40), "opa": json_values, "opb": json_values,
                           "opc": st.text(max_size=9), "opd": st.text(max_size=9), "cop": json_values}),
    st.fixed_dictionaries({"qtext": st.text(max_size=40), "ra": json_values,
                           "answers": st.lists(st.fixed_dictionaries({"aid": json_values, "atext": json_values}), max_size=4)
                           | json_values}),
)
lines = st.one_of(mcq_records.map(lambda r: json.dumps(r, allow_nan=True).encode("utf-8", "surrogatepass")),
                  st.binary(max_size=120))


@FUZZ
@given(raw=lines, fmt=st.sampled_from(["auto", "medqa", "medmcqa", "headqa", "generic"]), base=st.sampled_from([0, 1]))
def test_mcq_line_reader(raw, fmt, base):
    from medforge.datasets.mcq import BadRow, parse_line

    TRIED["datasets.mcq.parse_line"] += 1
    try:
        row = parse_line(raw, "f:0", fmt, base)
    except BadRow as exc:
        assert str(exc)
        return
    assert isinstance(row["question"], str) and row["question"]
    assert 2 <= len(row["options"]) <= 10 and all(isinstance(v, str) and v for v in row["options"].values())
    assert row["answer"] is None or row["answer"] in row["options"]
    json.dumps(row).encode("utf-8")  # every accepted row can be written as UTF-8


@FUZZ
@given(body=st.lists(lines, max_size=6))
def test_mcq_file_reader_quarantines_not_crashes(tmp_path_factory, body):
    from medforge.datasets.mcq import iter_mcq_file

    TRIED["datasets.mcq.iter_mcq_file"] += 1
    path = tmp_path_factory.mktemp("mcq") / "in.jsonl"
    path.write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in body))
    n = 0
    for _, row, reason in iter_mcq_file(path):
        assert (row is None) != (reason == "")
        n += 1
    assert n == sum(1 for b in body if b.replace(b"\n", b" ").strip())


@FUZZ
@given(body=st.one_of(st.binary(max_size=300),
                      st.lists(task_like, max_size=4).map(lambda v: json.dumps(v).encode()),
                      st.lists(task_like.map(json.dumps), max_size=4).map(lambda v: "\n".join(v).encode())))
def test_seed_reader(tmp_path_factory, body):
    from medforge.generate.seeds import SeedError, load_seeds

    TRIED["generate.seeds.load_seeds"] += 1
    path = tmp_path_factory.mktemp("seeds") / "seeds.jsonl"
    path.write_bytes(body)
    try:
        s = load_seeds(path)
    except (SeedError, UnicodeDecodeError) as exc:
        assert str(exc)
        return
    assert all(isinstance(x["instruction"], str) for x in s.seeds)


# --------------------------------------------------------------------------- novelty filter CLI
@FUZZ
@given(body=st.lists(st.one_of(st.binary(max_size=80),
                               st.dictionaries(st.sampled_from(["instruction", "id", "x"]), json_values, max_size=3)
                               .map(lambda d: json.dumps(d, allow_nan=True).encode("utf-8", "surrogatepass"))),
                     max_size=6),
       quarantine=st.booleans())
def test_novelty_filter_cli_input(tmp_path_factory, body, quarantine, capsys):
    from medforge.generate.novelty_cli import cli_main

    TRIED["generate.novelty_cli.cli_main"] += 1
    d = tmp_path_factory.mktemp("nov")
    (d / "in.jsonl").write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in body))
    argv = ["--input", str(d / "in.jsonl"), "--output", str(d / "out.jsonl")]
    if quarantine:
        argv += ["--quarantine", str(d / "q.jsonl")]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert err.startswith("medforge filter:") and len(err) > len("medforge filter: ")
    else:
        assert (d / "out.jsonl").is_file()
