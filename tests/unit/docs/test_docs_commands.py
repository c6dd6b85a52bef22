"""Every shell command the docs show (README.md, docs/*.md, YAML headers, job docstrings) is run by a
test or checked here, so that a renamed flag, file or config key fails CI instead of a user.

Checked without running anything:
- ``ray ...`` / ``serve ...``: Ray's own click commands parse the arguments (``make_context``), and
  ``ray job submit`` also goes through Ray's ``parse_runtime_env_args``; its entrypoint is checked in
  turn. A cluster config is submitted with ``--runtime-env deploy/runtime_env.yaml``, never with only
  ``--working-dir .`` (a cluster image without medforge cannot import the package then).
- ``medforge <sub>`` / ``python -m medforge.cli``: medforge's own dispatcher and the subcommand's own
  argparse parser; ``python ray_jobs/X.py``: the function the script calls, up to the point where
  the config is loaded and validated with the command's overrides (no Ray, no job).
- ``python bench/X.py``: the script's own argparse parser; ``pytest``: the paths and node ids exist.
- ``kubectl``/``docker``/``bash``/``make``/``curl``/``openssl``/``export``/``cd``/``pip``: the files,
  targets, Services and Secrets they name exist; ``curl`` talks to loopback or a placeholder host and
  sends keys from a variable or a file.
- Every repo path a command names exists; no secret value is written into a command line.

A command no rule knows fails with its file:line and how to classify it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import runpy
import shlex
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from doccmds import DocCommand, doc_commands

from medforge.config.registry import JOBS

REPO = Path(__file__).resolve().parents[3]
COMMANDS = doc_commands(REPO)

# Commands that a test runs as written (with tiny overrides appended). needles -> test node id.
# Every entry must match at least one documented command, and the test must exist.
RUN_BY_TEST: dict[tuple[str, ...], str] = {
    ("ray_jobs/pipeline.py", "configs/pipeline/local_tiny.yaml"):
        "tests/integration/test_pipeline.py::test_tiny_pipeline_end_to_end",
    # docs/cluster.md's walkthrough, run by the cluster rehearsal against a head + 2 worker nodes
    ("$SUBMIT python ray_jobs/pipeline.py", "configs/pipeline/cluster.yaml"):
        "tests/integration/test_rehearsal.py::test_pipeline_stopped_during_finetuning_resumes_on_resubmit",
    ("ray job status", "<submission-id>"):
        "tests/integration/test_rehearsal.py::test_pipeline_stopped_during_finetuning_resumes_on_resubmit",
    ("ray job stop", "<submission-id>"):
        "tests/integration/test_rehearsal.py::test_pipeline_stopped_during_finetuning_resumes_on_resubmit",
    ("ray job logs", "<submission-id>"):
        "tests/integration/test_rehearsal.py::test_pipeline_stopped_during_finetuning_resumes_on_resubmit",
    ("ray rsync-up", "src/medforge/"):
        "tests/integration/test_rehearsal.py::test_serve_deploy_of_the_cluster_file_answers_openai_and_medqa",
    ("serve deploy", "configs/serve/cluster.yaml", "--address"):
        "tests/integration/test_rehearsal.py::test_serve_deploy_of_the_cluster_file_answers_openai_and_medqa",
    ("serve status --address",):
        "tests/integration/test_rehearsal.py::test_serve_deploy_of_the_cluster_file_answers_openai_and_medqa",
    ("serve shutdown --address",):
        "tests/integration/test_rehearsal.py::test_serve_deploy_of_the_cluster_file_answers_openai_and_medqa",
}

PATHLIKE = re.compile(r"(?:^|(?<=[=\s:,@]))((?:configs|serving|deploy|ray_jobs|docs|tests|bench|scripts|src)/[\w./-]*)")
OUTPUT_DIRS = ("bench/out/",)  # gitignored output folders: a command may name a file it writes there
SECRET_NAME = re.compile(r"(^|_)(API_?KEYS?|KEYS?|TOKEN|SECRET|PASSWORD)(_|$)", re.I)  # HF_TOKEN, not TOKENIZERS_*
# Values that stand for a secret without being one.
NOT_A_SECRET = re.compile(r"^(\.\.\.|\$\(.*\)|\$\{?\w+\}?|<[^>]+>|REPLACE-ME.*|token)$")
# Paths that live on the user's machines or the cluster's shared storage, never in this checkout: a
# config that names one fails validation here only because the file is not here.
EXTERNAL_ROOTS = ("/mnt/shared/", "/models/", "/path/to/", "/data/", "s3://", "gs://", "data/",
                  # built on the user's machine by `medforge make-small-models` / `make-tiny-models` (make demo)
                  ".small_models/", ".tiny_models/")
PLACEHOLDER = re.compile(r"YOUR-BUCKET|REPLACE-ME|<[^>]+>|\.\.\.")
# Placeholders are for values the user fills into overrides (output.dir=s3://YOUR-BUCKET/...), not flags.
FLAG_PLACEHOLDER = re.compile(r"YOUR-|REPLACE-ME|<[^>]+>|^\.\.\.$")
JOB_SCRIPTS = sorted(Path(job.script).name for job in JOBS)  # the old names' shims (until 0.3) are not documented


def _program(argv: list[str]) -> str:
    return argv[0].rsplit("/", 1)[-1]


# -- interception: parse and validate, never run ----------------------------------------------------


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


class _Loaded(Exception):
    def __init__(self, cfg, problems: list[str]):
        self.cfg, self.problems = cfg, problems


@contextlib.contextmanager
def _dry_run():
    """argparse's parse_args stops right after a successful parse; the job runners stop right after
    loading the config (its problems are handed back instead of printed)."""
    import medforge.jobs
    import medforge.pipeline.job
    import medforge.serve.cli
    from medforge.config.base import ConfigError

    real_parse = argparse.ArgumentParser.parse_args
    real_load = medforge.jobs.load_config
    real_serve = medforge.serve.cli.load_serve_file

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(real_parse(self, args, namespace))

    def load(model, path, overrides=None):
        try:
            cfg = real_load(model, path, overrides)
        except ConfigError as exc:
            raise _Loaded(None, exc.problems) from None
        problems = []
        if model.__name__ == "PipelineConfig":
            from medforge.pipeline.plan import wiring_problems

            problems = wiring_problems(cfg)
        raise _Loaded(cfg, problems)

    def load_serve(path, overrides=None):
        try:
            data = real_serve(path, overrides)
        except ConfigError as exc:
            raise _Loaded(None, exc.problems) from None
        raise _Loaded(data, [])

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args), \
            mock.patch.object(medforge.jobs, "load_config", load), \
            mock.patch.object(medforge.pipeline.job, "load_config", load), \
            mock.patch.object(medforge.serve.cli, "load_serve_file", load_serve):
        yield


def _call_dry(func, argv: list[str], where: str) -> object:
    """Run ``func(argv)`` in dry mode: the parsed namespace or the loaded config, or fail."""
    err = io.StringIO()
    outcome: _Parsed | _Loaded | SystemExit | None = None
    try:
        with _dry_run(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = func(argv)
    except (_Parsed, _Loaded, SystemExit) as exc:
        outcome = exc
    if isinstance(outcome, _Parsed):
        return outcome.namespace
    if isinstance(outcome, _Loaded):
        bad = [p for p in outcome.problems if not _external_path_problem(p)]
        assert not bad, f"{where}: the config does not validate with the command's overrides:\n  " + "\n  ".join(bad)
        return outcome.cfg
    if isinstance(outcome, SystemExit):
        pytest.fail(f"{where}: the parser refused the arguments (exit {outcome.code}): {err.getvalue().strip()}")
    pytest.fail(f"{where}: returned {rc} without parsing arguments or loading a config: {err.getvalue().strip()}")


def _external_path_problem(problem: str) -> bool:
    """A problem that only says a user's or the cluster's file is not on this machine."""
    message = problem.split("Value error, ", 1)[-1]  # past the shown input, which quotes model ids too
    paths = [p for p in re.findall(r"'([^' ]+)'", message) if "/" in p]
    missing = ("does not exist", "holds no", "file not found", "no such folder")
    return bool(paths) and any(m in problem for m in missing) and all(
        p.startswith(EXTERNAL_ROOTS) or PLACEHOLDER.search(p) for p in paths
    )


# -- per-program checks ------------------------------------------------------------------------------


def _click_check(group, argv: list[str], where: str):
    """Resolve ``argv`` through a click group down to its command and parse it there (no invoke)."""
    import click

    name = argv[0]
    try:
        ctx = group.make_context(name, list(argv[1:]), resilient_parsing=False)
        cmd = group
        while isinstance(cmd, click.Group):
            rest = ctx._protected_args + ctx.args if hasattr(ctx, "_protected_args") else ctx.protected_args + ctx.args
            sub_name, sub, sub_args = cmd.resolve_command(ctx, rest)
            ctx = sub.make_context(sub_name, sub_args, parent=ctx)
            cmd = sub
    except click.exceptions.ClickException as exc:
        pytest.fail(f"{where}: {name} refuses the arguments: {exc.format_message()}")
    return cmd, ctx


def _check_ray(cmd: DocCommand, argv: list[str]) -> None:
    from ray.scripts.scripts import cli

    import click

    sub, ctx = _click_check(cli, ["ray", *argv[1:]], cmd.where())
    # a placeholder may stand for a positional value (a job id), never in an option's value (an address, a file)
    options = {p.name for p in sub.params if isinstance(p, click.Option)}
    bad = {k: v for k, v in ctx.params.items() if k in options and isinstance(v, str) and FLAG_PLACEHOLDER.search(v)}
    assert not bad, f"{cmd.where()}: placeholder(s) in ray's options {bad}; only override values and ids may hold one"
    if sub.name == "submit" and ctx.parent is not None and ctx.parent.info_name == "job":
        from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args

        p = ctx.params
        try:
            env = parse_runtime_env_args(runtime_env=p.get("runtime_env"), runtime_env_json=p.get("runtime_env_json"),
                                         working_dir=p.get("working_dir"))
        except Exception as exc:  # Ray raises ValueError for the pair, FileNotFoundError for a missing file
            pytest.fail(f"{cmd.where()}: ray job submit refuses the runtime env: {exc}")
        for name, value in ((env or {}).get("env_vars") or {}).items():
            assert not SECRET_NAME.search(name), (
                f"{cmd.where()}: {name} travels in the job's runtime_env, which `ray job list` and the dashboard show "
                "to anyone; put keys in a file on the shared mount (api_keys_file) or in the nodes' environment")
        entry = list(p.get("entrypoint") or [])
        assert entry, f"{cmd.where()}: ray job submit without an entrypoint after --"
        config = _option(entry, "--config") or ""
        if "cluster" in Path(config).name or config.startswith("configs/serve/cluster"):
            assert p.get("runtime_env") == "deploy/runtime_env.yaml", (
                f"{cmd.where()}: a cluster config is submitted with --runtime-env deploy/runtime_env.yaml (it ships "
                "the medforge package to every worker); --working-dir . alone is for a local `ray start` only")
        _check(cmd, entry)


def _check_serve(cmd: DocCommand, argv: list[str]) -> None:
    from ray.serve.scripts import cli

    sub, ctx = _click_check(cli, ["serve", *argv[1:]], cmd.where())
    target = ctx.params.get("config_file_name") or ctx.params.get("config_or_import_path")
    if target and str(target).endswith((".yaml", ".yml")):
        import medforge.serve.cli as serve_cli  # the attribute, so that the dry run's stand-in is called

        _call_dry(lambda a: serve_cli.load_serve_file(a[0], a[1:]), [target], cmd.where())


def _check_medforge(cmd: DocCommand, argv: list[str]) -> None:
    from medforge.cli import COMMANDS, main

    assert len(argv) > 1 and argv[1] in COMMANDS, f"{cmd.where()}: `medforge {argv[1:2]}` is no medforge command"
    _call_dry(main, argv[1:], cmd.where())


def _job_function(script: Path):
    """The library function a ray_jobs/ script calls with sys.argv[1:] (read from its source, not run)."""
    import importlib

    tree = ast.parse(script.read_text())
    imported = {a.asname or a.name: (node.module, a.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medforge.")
                for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
            if any(isinstance(a, ast.Subscript) and "argv" in ast.unparse(a) for a in node.args):
                module, name = imported[node.func.id]
                return getattr(importlib.import_module(module), name)
    raise AssertionError(f"{script}: no call of a medforge function with sys.argv[1:]")


def _check_python(cmd: DocCommand, argv: list[str]) -> None:
    args = argv[1:]
    if args[:2] == ["-m", "pytest"]:
        return _check_pytest(cmd, args[2:])
    if args[:2] == ["-m", "medforge.cli"]:
        return _check_medforge(cmd, ["medforge", *args[2:]])
    assert args and args[0].endswith(".py"), f"{cmd.where()}: no rule for `python {' '.join(args[:2])}`"
    script = REPO / args[0]
    assert script.is_file(), f"{cmd.where()}: {args[0]} does not exist"
    if args[0].startswith("ray_jobs/"):
        bad = [a for a in args if FLAG_PLACEHOLDER.search(a) and not re.match(r"^[\w.]+=", a)]
        assert not bad, f"{cmd.where()}: placeholder(s) {bad} outside the key=value overrides"
        _call_dry(_job_function(script), args[1:], cmd.where())
    elif args[0].startswith("bench/"):
        def run(a):
            with mock.patch.object(sys, "argv", [str(script), *a]):
                runpy.run_path(str(script), run_name="__main__")
        _call_dry(run, args[1:], cmd.where())
    else:
        pytest.fail(f"{cmd.where()}: no rule for scripts outside ray_jobs/ and bench/: {args[0]}")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test")}


def _check_test_id(node_id: str, where: str) -> None:
    path, _, name = node_id.partition("::")
    assert (REPO / path).exists(), f"{where}: {path} does not exist"
    if name:
        assert name.split("[")[0] in _test_names(REPO / path), f"{where}: no test {name} in {path}"


def _check_pytest(cmd: DocCommand, args: list[str]) -> None:
    targets = [a for a in args if not a.startswith("-")]
    assert targets, f"{cmd.where()}: pytest without a test path"
    for t in targets:
        _check_test_id(t, cmd.where())


def _option(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _kuberay_names() -> dict[str, set[str]]:
    """Services KubeRay creates for the manifests (its naming: <cluster>-head-svc, <service>-serve-svc),
    the RayJobs, and the Secrets the manifests reference."""
    out: dict[str, set[str]] = {"svc": set(), "rayjob": set(), "secret": set(), "token_secret": set()}
    for path in (REPO / "deploy" / "kuberay").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            name, kind = doc["metadata"]["name"], doc["kind"]
            if kind in ("RayCluster", "RayService", "RayJob"):
                out["svc"].add(f"{name}-head-svc")
            if kind == "RayService":
                out["svc"].add(f"{name}-serve-svc")
            if kind == "RayJob":
                out["rayjob"].add(name)
            if kind == "RayCluster" and (doc["spec"].get("authOptions") or {}).get("mode") == "token":
                out["token_secret"].add(name)  # KubeRay names the token Secret after the cluster (key auth_token)
            out["secret"] |= set(re.findall(r"secretName: (\S+?)[},\s]", path.read_text()))
            out["secret"] |= {m for m in re.findall(r"secretKeyRef:\s*\{?\s*name: (\S+?)[,}\s]", path.read_text())}
    return out


def _check_kubectl(cmd: DocCommand, argv: list[str]) -> None:
    sub, rest = argv[1], argv[2:]
    names = _kuberay_names()
    if sub == "apply":
        files = [rest[i + 1] for i, a in enumerate(rest) if a == "-f"]
        assert files, f"{cmd.where()}: kubectl apply without -f"
        for f in files:
            assert (REPO / f).is_file(), f"{cmd.where()}: {f} does not exist"
            list(yaml.safe_load_all((REPO / f).read_text()))
    elif sub == "port-forward":
        target = rest[0]
        assert target.startswith("svc/") and target[4:] in names["svc"], (
            f"{cmd.where()}: {target} is not a Service KubeRay creates for deploy/kuberay ({sorted(names['svc'])})")
    elif sub == "get" and rest[:1] == ["secret"]:
        assert rest[1] in names["token_secret"], (
            f"{cmd.where()}: {rest[1]} is not the token Secret KubeRay makes for a RayCluster with authOptions")
        assert "auth_token" in (_option(rest, "-o") or ""), f"{cmd.where()}: read only the auth_token key"
    elif sub == "get" and rest[:1] == ["rayjob"]:
        assert rest[1] in names["rayjob"], f"{cmd.where()}: no RayJob named {rest[1]} in deploy/kuberay"
    elif sub == "logs":
        label = _option(rest, "-l") or ""
        assert label.startswith("job-name=") and label.split("=", 1)[1] in names["rayjob"], (
            f"{cmd.where()}: {label!r} names no RayJob's submitter Job")
    elif sub == "create" and rest[:2] == ["secret", "generic"]:
        assert rest[2] in names["secret"], f"{cmd.where()}: no manifest in deploy/kuberay uses Secret {rest[2]}"
        for a in rest[3:]:
            assert not a.startswith("--from-literal"), f"{cmd.where()}: a key value in a command line; use --from-file"
    else:
        pytest.fail(f"{cmd.where()}: no rule for `kubectl {sub}`; add one to _check_kubectl")


def _check_docker(cmd: DocCommand, argv: list[str]) -> None:
    if argv[1] == "build":
        f = _option(argv, "-f")
        assert f and (REPO / f).is_file(), f"{cmd.where()}: docker build -f {f}: no such file"
        assert argv[-1] == ".", f"{cmd.where()}: the build context is the repository root (.)"
    else:
        assert argv[1] == "push", f"{cmd.where()}: no rule for `docker {argv[1]}`"


def _makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+):", text, re.M))


def _check_make(cmd: DocCommand, argv: list[str]) -> None:
    for target in argv[1:]:
        assert target in _makefile_targets(), f"{cmd.where()}: no Makefile target {target!r}"


def _check_curl(cmd: DocCommand, argv: list[str]) -> None:
    urls = [a for a in argv[1:] if a.startswith(("http://", "https://"))]
    assert urls, f"{cmd.where()}: curl without a URL"
    for url in urls:
        host = re.match(r"https?://([^/:]+)", url).group(1)
        assert host in ("127.0.0.1", "localhost") or host.startswith("<"), (
            f"{cmd.where()}: curl {url}: the docs reach endpoints on loopback (port-forward / tunnel) or a <placeholder>")
    for i, a in enumerate(argv):
        if a in ("-H", "--header") and i + 1 < len(argv) and argv[i + 1].lower().startswith("authorization"):
            value = argv[i + 1].split(None, 2)[-1]
            assert value.startswith("$") or value.startswith("@"), (
                f"{cmd.where()}: a literal key in the Authorization header; use $MEDFORGE_API_KEYS or a file")


def _check_trivial(cmd: DocCommand, argv: list[str]) -> None:
    prog = _program(argv)
    if prog == "bash":
        assert (REPO / argv[1]).is_file(), f"{cmd.where()}: {argv[1]} does not exist"
    elif prog == "base64":
        assert argv[1:] == ["-d"], f"{cmd.where()}: no rule for `{cmd.text}`"
    elif prog == "openssl":
        assert argv[1] == "rand", f"{cmd.where()}: no rule for `openssl {argv[1]}`"
    elif prog == "cd":
        assert len(argv) == 1 or (REPO / argv[1]).is_dir() or argv[1].startswith(("/", "~", "$", "<")), cmd.where()
    elif prog == "pip":
        for a in argv[2:]:
            if a.startswith((".", "/")) or a.endswith((".txt", ".whl")):
                assert (REPO / a).exists(), f"{cmd.where()}: {a} does not exist"


CHECKS = {
    "ray": _check_ray, "serve": _check_serve, "medforge": _check_medforge, "python": _check_python,
    "python3": _check_python, "kubectl": _check_kubectl, "docker": _check_docker, "make": _check_make,
    "curl": _check_curl, "bash": _check_trivial, "openssl": _check_trivial, "cd": _check_trivial,
    "pip": _check_trivial, "base64": _check_trivial, "export": lambda cmd, argv: None,
}


def _check(cmd: DocCommand, argv: list[str]) -> None:
    prog = _program(argv)
    check = CHECKS.get(prog)
    if check is None:
        assert _run_by(cmd), (
            f"{cmd.where()}: `{cmd.text}` is neither checked nor run by a test. Classify it in "
            f"{Path(__file__).relative_to(REPO)}: add a rule for `{prog}` to CHECKS, or map a needle of it to the "
            "test that runs it in RUN_BY_TEST")
        return
    check(cmd, argv)


def _run_by(cmd: DocCommand) -> str | None:
    return next((tid for needles, tid in RUN_BY_TEST.items() if all(n in cmd.text for n in needles)), None)


def _check_no_secret_values(cmd: DocCommand) -> None:
    pairs = list(cmd.env.items())
    if cmd.argv[0] == "export":
        pairs += [tuple(a.split("=", 1)) for a in cmd.argv[1:] if "=" in a]
    for name, value in pairs:
        if SECRET_NAME.search(name) and name != "RAY_AUTH_MODE":
            assert NOT_A_SECRET.match(value), f"{cmd.where()}: {name}={value!r} writes a secret into the docs"
    if "--runtime-env-json" in cmd.argv:
        json_arg = _option(cmd.argv, "--runtime-env-json") or ""
        names = re.findall(r'"(\w+)"\s*:', json_arg)
        assert not any(SECRET_NAME.search(n) for n in names), (
            f"{cmd.where()}: a key in --runtime-env-json lands in Ray's job table (`ray job list` shows it)")


def _check_paths(cmd: DocCommand) -> None:
    for token in [*cmd.argv, *cmd.env.values()]:
        for path in PATHLIKE.findall(token):
            if path.startswith(OUTPUT_DIRS):
                continue
            assert (REPO / path).exists(), f"{cmd.where()}: {path} does not exist in the repository"


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"{c.where()}:{c.argv[0].rsplit('/', 1)[-1]}")
def test_documented_command_is_checked_or_run(cmd: DocCommand):
    _check_paths(cmd)
    _check_no_secret_values(cmd)
    _check(cmd, cmd.argv)


def test_there_are_commands_from_every_kind_of_source():
    assert len(COMMANDS) > 100
    assert {c.path.split("/")[0] for c in COMMANDS} >= {"README.md", "docs", "configs", "deploy", "ray_jobs"}


@pytest.mark.parametrize("needles,node_id", list(RUN_BY_TEST.items()))
def test_run_by_test_entries_match_a_command_and_a_test(needles, node_id):
    assert any(all(n in c.text for n in needles) for c in COMMANDS), f"no documented command contains {needles}"
    _check_test_id(node_id, "RUN_BY_TEST")


def test_every_job_script_is_documented_locally_and_on_a_cluster():
    for name in JOB_SCRIPTS:
        runs = [c for c in COMMANDS if f"ray_jobs/{name}" in c.text]
        assert any(c.argv[0].endswith("python") for c in runs), f"no documented local run of ray_jobs/{name}"
        assert any(c.argv[:3] == ["ray", "job", "submit"] for c in runs), f"no documented ray job submit of ray_jobs/{name}"


# -- the checks themselves catch what they are for ---------------------------------------------------


def _one(text: str) -> DocCommand:
    from doccmds import parse_block

    [cmd] = parse_block(text, "made-up.md", 1)
    return cmd


@pytest.mark.parametrize("text,message", [
    ("ray job submit --runtime-env deploy/runtime_env.yaml --runtime-env-json '{}' -- python ray_jobs/evaluate.py "
     "--config configs/evaluate/cluster.yaml", "runtime env"),
    ("ray job submit --working-dir . -- python ray_jobs/evaluate.py --config configs/evaluate/cluster.yaml",
     "--runtime-env deploy/runtime_env.yaml"),
    ("ray job submit --no-such-flag -- python ray_jobs/evaluate.py --config configs/evaluate/local_tiny.yaml",
     "refuses the arguments"),
    ("ray up --no-such-flag cluster.yaml", "refuses the arguments"),
    ("serve deploy configs/serve/no_such.yaml", "does not exist"),
    (".venv/bin/python ray_jobs/evaluate.py --config configs/evaluate/local_tiny.yaml data.no_such_key=1",
     "does not validate"),
    (".venv/bin/python ray_jobs/evaluate.py --config configs/evaluate/local_tiny.yaml --stray", "refused"),
    (".venv/bin/python ray_jobs/pipeline.py --config configs/pipeline/local_tiny.yaml --from nowhere", "refused"),
    ("medforge keywords --inptu x.jsonl --output y.jsonl", "refused"),
    ("medforge no-such-command", "no medforge command"),
    (".venv/bin/python bench/bench_generate.py --no-such-flag", "refused"),
    ("kubectl port-forward svc/medforge-svc 8265:8265", "not a Service"),
    ("kubectl get secret medforge-serve -o jsonpath='{.data.auth_token}'", "not the token Secret"),
    ("curl -H 'Authorization: Bearer abc123' http://127.0.0.1:8000/v1/models", "literal key"),
    ("curl http://10.0.0.5:8000/v1/models", "loopback"),
    ("make no-such-target", "no Makefile target"),
    ("ray job submit --address http://<head>:8265 -- python ray_jobs/evaluate.py --config configs/evaluate/local_tiny.yaml",
     "placeholder"),
    ("ray job logs --address http://127.0.0.1:8265 --no-such-flag <submission-id>", "refuses the arguments"),
    ("python ray_jobs/evaluate.py --config configs/evaluate/<setting>.yaml", "placeholder"),
    ("frobnicate configs", "neither checked nor run"),
])
def test_a_broken_command_fails_the_check(text, message):
    cmd = _one(text)
    with pytest.raises((AssertionError, pytest.fail.Exception), match=re.escape(message)):
        _check(cmd, cmd.argv)


@pytest.mark.parametrize("text,message", [
    ("OPENAI_API_KEY=sk-abc .venv/bin/python ray_jobs/generate.py --config configs/generate/openai_api.yaml",
     "writes a secret"),
    ("export MEDFORGE_API_KEYS=0123456789abcdef", "writes a secret"),
    ("""ray job submit --runtime-env-json '{"env_vars": {"MEDFORGE_API_KEYS": "x"}}' -- python a.py""", "job table"),
])
def test_a_secret_in_a_command_line_fails(text, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        _check_no_secret_values(_one(text))


def test_commands_inside_a_substitution_are_checked_too():
    # doccmds keeps $(...) as one literal word; the commands inside it get the same checks here
    for cmd in COMMANDS:
        for inner in re.findall(r"\$\(([^()]*)\)", cmd.text):
            from doccmds import parse_block

            for sub in parse_block(inner, cmd.path, cmd.line):
                _check(sub, sub.argv)


def test_a_missing_repo_path_fails():
    with pytest.raises(AssertionError, match="configs/nope.yaml does not exist"):
        _check_paths(_one("cat configs/nope.yaml"))


def test_shlex_agrees_with_doccmds_on_plain_commands():
    # a guard on the reader itself: where no shell feature is involved, its words are shlex's
    for cmd in COMMANDS:
        if not re.search(r"[$<>|&;]", cmd.text) and not cmd.env:
            assert cmd.argv == shlex.split(cmd.text, comments=True), cmd.where()
