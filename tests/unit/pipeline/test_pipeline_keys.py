"""The endpoint's key as a value (a KeySource), never an environment write: where the pipeline finds it,
what its stages and the Serve replicas are given (the key FILE's path, never the key), and a whole
run of the evaluate and serve stages under an ``os.environ`` that records every write."""

from __future__ import annotations

import ast
import json
import os
import re
import stat
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import ClassVar

import pytest

import medforge
from medforge.config.base import load_config
from medforge.evaluate.freeform import EvaluateResult, JudgeCalls, WinRate
from medforge.pipeline import runner as R
from medforge.pipeline import stages as S
from medforge.pipeline.config import PipelineConfig
from medforge.pipeline.plan import make_plan
from medforge.pipeline.records import now, write_record
from medforge.pipeline.runner import PipelineRefused, PipelineRun, endpoint_key
from medforge.secrets import KeySource, NoKeyError, resolve_key, write_new_key_file
from medforge.serve.cli import INGRESS_DRAIN

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "pipeline"
PACKAGE = Path(medforge.__file__).resolve().parent


# ---------------------------------------------------------------- no environment writes, by reading the code

WRITERS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")


def environ_writes(source: str) -> list[int]:
    """Lines that write the process environment: ``os.environ[k] = v`` (or ``del``, ``+=``), a
    mutating method of ``os.environ``, ``os.putenv``/``os.unsetenv``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        if any(isinstance(t, ast.Subscript) and _is_environ(t.value) for t in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if (f.attr in WRITERS and _is_environ(f.value)) or f.attr in ("putenv", "unsetenv"):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_check_sees_every_kind_of_environment_write():
    bad = ("import os\nos.environ['A'] = 'k'\nos.environ.update(A='k')\nos.environ.setdefault('A', 'k')\n"
           "del os.environ['A']\nos.putenv('A', 'k')\nfrom os import environ\nenviron['A'] = 'k'\nos.environ.pop('A')\n")
    assert environ_writes(bad) == [2, 3, 4, 5, 6, 8, 9]
    assert environ_writes("import os\nx = os.environ.get('A')\ny = os.environ['A']\n'A' in os.environ\n") == []


def test_no_pipeline_module_and_not_secrets_writes_the_environment():
    files = sorted((PACKAGE / "pipeline").glob("*.py")) + [PACKAGE / "secrets.py"]
    assert len(files) >= 8
    found = {f.name: environ_writes(f.read_text()) for f in files}
    assert {k: v for k, v in found.items() if v} == {}


# ---------------------------------------------------------------- the key source


@pytest.fixture
def test_set(tmp_path) -> Path:
    path = tmp_path / "test.jsonl"
    rows = [{"id": f"q{i}", "instruction": f"Explain condition {i}.", "input": "", "reference": f"Condition {i} is ..."}
            for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(tmp_path, test_set, *overrides) -> PipelineConfig:
    return load_config(PipelineConfig, CONFIGS / "local_tiny.yaml", [
        f"output.dir={tmp_path / 'run'}", f"evaluate.data.test_path={test_set}", "evaluate.data.format=generic",
        "evaluate.data.reference_fields=[reference]", *overrides])


def test_key_source_reads_its_file_first_then_its_variable(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# the endpoint's key\n\nfirst-key\nsecond-key\n")
    assert KeySource(env="K", file=str(f)).read({"K": "env-key"}) == "first-key"
    assert KeySource(env="K").read({"K": "env-key"}) == "env-key"
    assert resolve_key("K", None, {"K": "env-key"}) == "env-key"
    with pytest.raises(NoKeyError, match=r"\$K"):
        KeySource(env="K").read({})
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(NoKeyError, match="empty"):
        KeySource(env="K", file=str(empty)).read({})
    assert "first-key" not in repr(KeySource(env="K", file=str(f)))  # the value names where, never what


def test_a_new_key_file_is_private_and_replaced_on_each_call(tmp_path):
    path = write_new_key_file(tmp_path / "secrets" / "endpoint_key")
    first = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{48}", first), first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert write_new_key_file(path).read_text().strip() != first
    assert [p.name for p in path.parent.iterdir()] == ["endpoint_key"]  # no temporary file left beside it


def test_endpoint_key_prefers_the_configured_file_and_checks_it(tmp_path, test_set):
    keys = tmp_path / "keys"
    keys.write_text("file-key\n")
    src = endpoint_key(_cfg(tmp_path, test_set, f"serve.llm.security.auth.api_keys_file={keys}"), {"MEDFORGE_API_KEYS": "e"}, True)
    assert src == KeySource(env="MEDFORGE_API_KEYS", file=str(keys)) and src.read({}) == "file-key"
    with pytest.raises(PipelineRefused, match="api_keys_file: key file .*nope.* does not exist"):
        endpoint_key(_cfg(tmp_path, test_set, f"serve.llm.security.auth.api_keys_file={tmp_path / 'nope'}"), {}, False)
    (tmp_path / "blank").write_text("\n# none\n")
    with pytest.raises(PipelineRefused, match="holds no key"):
        endpoint_key(_cfg(tmp_path, test_set, f"serve.llm.security.auth.api_keys_file={tmp_path / 'blank'}"), {}, True)


def test_endpoint_key_from_the_variable_then_refused_on_a_cluster_then_made_locally(tmp_path, test_set):
    cfg = _cfg(tmp_path, test_set)
    assert endpoint_key(cfg, {"MEDFORGE_API_KEYS": "mine"}, True) == KeySource(env="MEDFORGE_API_KEYS")
    renamed = _cfg(tmp_path, test_set, "serve.llm.security.auth.api_keys_env=MY_KEY")
    assert endpoint_key(renamed, {"MY_KEY": "mine"}, False) == KeySource(env="MY_KEY")
    with pytest.raises(PipelineRefused, match="several keys"):
        endpoint_key(cfg, {"MEDFORGE_API_KEYS": "a,b"}, False)
    with pytest.raises(PipelineRefused, match="no key for the endpoint.*api_keys_file"):
        endpoint_key(cfg, {}, True)
    environ: dict[str, str] = {}
    made = endpoint_key(cfg, environ, False)
    assert made.generated and made.env == "MEDFORGE_API_KEYS" and environ == {}
    assert made.file == str((tmp_path / "run" / "secrets" / "endpoint_key").resolve()) and len(made.read({})) == 48


def test_stage_configs_carry_the_key_file_path_never_the_key(tmp_path, test_set):
    plan = make_plan(_cfg(tmp_path, test_set, "serve.medqa={mc_model: /m, context_llm: served}"))
    made = KeySource(env="MEDFORGE_API_KEYS", file=str(write_new_key_file(tmp_path / "k")), generated=True)
    key = made.read({})
    apps = {a["name"]: a["args"] for a in plan.serve_apps(made)}
    assert apps["llm"]["security"]["auth"] == {"api_keys_env": "MEDFORGE_API_KEYS", "api_keys_file": made.file}
    assert apps["medqa"]["context_llm"]["api_key_file"] == made.file
    # /v1/medqa is behind the same key (its replicas build their auth from this config, not the driver's env)
    assert apps["medqa"]["security"]["auth"] == apps["llm"]["security"]["auth"]
    tuned, base = plan.eval_config("tuned", made), plan.eval_config("base", made)
    for engine in (tuned.engine, tuned.judge.engine, base.engine):
        assert (engine.api_key_env, engine.api_key_file) == ("MEDFORGE_API_KEYS", made.file)
        assert resolve_key(engine.api_key_env, engine.api_key_file, {}) == key  # what a client actor reads
    dumped = json.dumps(apps) + tuned.model_dump_json() + base.model_dump_json()
    assert key not in dumped
    # a key in a variable: the replicas are told that variable, and no file
    env_only = plan.serve_args(KeySource(env="MY_KEY"))["security"]["auth"]
    assert env_only == {"api_keys_env": "MY_KEY", "api_keys_file": None}
    assert {a["name"]: a["args"] for a in plan.serve_apps(KeySource(env="MY_KEY"))}["medqa"]["security"]["auth"] == env_only


# ---------------------------------------------------------------- a run of the stages under a recording environ


class RecordingEnviron(MutableMapping):
    """``os.environ`` for the test: reads pass through, every write is recorded (and refused)."""

    def __init__(self, base: dict[str, str]):
        self.base, self.writes = base, []

    def __getitem__(self, k: str) -> str:
        return self.base[k]

    def __setitem__(self, k: str, v: str) -> None:
        self.writes.append(("set", k))

    def __delitem__(self, k: str) -> None:
        self.writes.append(("del", k))

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)

    def copy(self) -> dict[str, str]:
        return dict(self.base)


def _fake_evaluate(seen):
    def evaluate(cfg):
        seen.append(cfg)
        out = Path(cfg.output.dir)
        out.mkdir(parents=True, exist_ok=True)
        rel = {"usable": True, "reasons": [], "consistency": 1.0, "position_bias": 0.0, "unparsed_share": 0.0,
               "n_pairs": 3, "n_calls": 6}
        report = {"judge": cfg.judge.name, "n_items": 3, "references": {"reference": {
            "win_rate": 0.5, "ci95": [0.3, 0.7], "n_scored": 3, "judge_reliability": rel}}}
        (out / "report.json").write_text(json.dumps(report))
        (out / "answers.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "answer": "a"}) + "\n" for i in range(3)))
        return EvaluateResult(output_dir=str(out), model="m", judge=str(cfg.judge.name), n_items=3,
                              judge_calls=JudgeCalls(requested=6, cached=0, made=6, errors=0),
                              references={"reference": WinRate(win_rate=0.5, ci95=[0.3, 0.7], lc_win_rate=None, n_scored=3)},
                              report_path=str(out / "report.json"), report=report)
    return evaluate


class _FakeOpenAI:
    keys: ClassVar[list[str]] = []

    def __init__(self, base_url, api_key, **_):
        self.keys.append(api_key)
        reply = type("R", (), {"choices": [type("C", (), {"message": type("M", (), {"content": "an answer"})()})()]})()
        self.chat = type("Chat", (), {"completions": type("Comp", (), {"create": staticmethod(lambda **kw: reply)})()})()


@pytest.mark.parametrize("given", ["none", "env", "file"])
def test_evaluate_and_serve_run_without_writing_the_environment(tmp_path, test_set, monkeypatch, given):
    """The runner and the real evaluate and serve stages (engines replaced: Serve, the evaluation
    job, the openai client) under an ``os.environ`` that records writes: none, and the key reaches
    the Serve config, the clients and the pipeline's own requests as its source says."""
    keys = tmp_path / "keys"
    keys.write_text("file-key\n")
    base = {k: v for k, v in os.environ.items() if k not in ("MEDFORGE_API_KEYS", "RAY_ADDRESS")}
    if given == "env":
        base["MEDFORGE_API_KEYS"] = "env-key"
    environ = RecordingEnviron(base)
    monkeypatch.setattr(os, "environ", environ)
    overrides = [f"serve.llm.security.auth.api_keys_file={keys}"] if given == "file" else []
    plan = make_plan(_cfg(tmp_path, test_set, *overrides))
    ft = plan.stages["finetune"]
    ft.folder.mkdir(parents=True)
    write_record(ft.folder, {"stage": "finetune", "fingerprint": ft.fingerprint, "upstream": ft.upstream, "config": {},
                             "outputs": {"export_dir": str(ft.folder / "model"), "adapter_dir": None, "base_model": "tiny",
                                         "data_sha256": "0" * 64}, "seconds": 1.0, "finished_at": now()})
    served, waited, evaluated = [], [], []
    monkeypatch.setattr(R, "run_serve", lambda data, *a, **k: served.append(data))
    monkeypatch.setattr(R, "wait_for_models", lambda url, key, ids: waited.append(key))
    monkeypatch.setattr(PipelineRun, "ensure_ray", lambda self: None)
    monkeypatch.setattr(PipelineRun, "stop_serving", lambda self: None)
    monkeypatch.setattr(S, "evaluate", _fake_evaluate(evaluated))
    _FakeOpenAI.keys = []
    monkeypatch.setattr("openai.OpenAI", _FakeOpenAI)

    run = PipelineRun(plan, ["evaluate", "serve"])
    summary = run.run()

    assert environ.writes == []
    assert {n: s.status for n, s in summary.stages.items()}["serve"] == "ran"
    key = run.key.read(environ)
    expected = {"none": None, "env": "env-key", "file": "file-key"}[given]
    assert key == expected or (given == "none" and run.key.generated and len(key) == 48)
    assert waited == [key] and _FakeOpenAI.keys == [key]  # the pipeline's own requests
    auth = served[0]["applications"][0]["args"]["security"]["auth"]
    assert auth["api_keys_file"] == (None if given == "env" else run.key.file)
    assert key not in json.dumps(served)
    # the endpoint is shut down at the run's end (serve.keep_serving=false): no ingress drain to wait out
    assert served[0]["controller_options"]["runtime_env"]["env_vars"] == {INGRESS_DRAIN: "0"}
    for cfg in evaluated:  # the client actors read the key where they run
        assert resolve_key(cfg.engine.api_key_env, cfg.engine.api_key_file, environ) == key
        assert cfg.engine.api_key_file == run.key.file
    sv = json.loads((plan.stages["serve"].folder / "stage.json").read_text())["outputs"]
    assert sv["api_key_env"] == "MEDFORGE_API_KEYS" and key not in json.dumps(sv)
