"""Checks of a cluster launcher file (``cluster.yaml``) before ``ray up``: ``medforge check-cluster``.

* Placeholders (``REPLACE-ME...``) left in: refused, each with its line.
* Ray's own schema check, as ``ray up`` runs it: ``prepare_config`` (fills the defaults) then
  ``validate_config`` -- on the raw file ``validate_config`` alone fails ("Missing
  'cluster_synced_files'").
* No dashboard or job server bound to every interface (reach it with ``ray dashboard``).
* Every cluster job config's declared demand fits a node type of this file
  (:func:`medforge.cluster.resources.demand_problems`).
* The nodes install the project's environment: ``deploy/requirements-cluster.txt`` (generated from
  pyproject, :mod:`medforge.cluster.environment`) mounted and installed by ``setup_commands``.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from medforge.cluster.resources import demand_problems, node_types_from_autoscaler_config

PLACEHOLDER = re.compile(r"REPLACE-ME[\w-]*")
REPO = Path(__file__).resolve().parents[3]
CLUSTER_JOB_CONFIGS = ("configs/*/cluster_*.yaml", "configs/*/*_cluster_*.yaml", "configs/*/cluster.yaml")


def placeholder_problems(text: str, source: str) -> list[str]:
    """One line per placeholder left in (comments aside), with the lines where it is."""
    where: dict[str, list[int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        for m in PLACEHOLDER.finditer("" if line.lstrip().startswith("#") else line.split(" #")[0]):
            where.setdefault(m.group(), []).append(n)
    return [f"{source}: placeholder {name} left in (line {', '.join(map(str, lines))}); fix: put your value "
            "there (see docs/cluster.md, 'Before ray up')" for name, lines in where.items()]


def ray_schema_problems(config: dict[str, Any]) -> list[str]:
    """What ``ray up`` would refuse: Ray's config preparation and JSON-schema validation."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except Exception as exc:  # noqa: BLE001 - jsonschema / ValueError: reported with Ray's own words
        first = str(exc).split("\n\nFailed validating")[0].strip()
        return [f"Ray's cluster config validation: {type(exc).__name__}: {first[:600]}"]
    return []


def exposure_problems(config: dict[str, Any]) -> list[str]:
    cmds = " ".join(config.get("head_start_ray_commands") or [])
    if "--dashboard-host=0.0.0.0" in cmds or "--dashboard-host 0.0.0.0" in cmds:
        return ["head_start_ray_commands: --dashboard-host=0.0.0.0 exposes the dashboard and job server (anyone who "
                "reaches port 8265 can run code); fix: --dashboard-host=127.0.0.1 and `ray dashboard cluster.yaml`"]
    return []


def environment_problems(config: dict[str, Any], repo: Path = REPO) -> list[str]:
    """The nodes must install the one definition of the environment, and it must be current."""
    from medforge.cluster.environment import NODE_PATH, REQUIREMENTS_FILE, render

    problems = []
    mounts = config.get("file_mounts") or {}
    if mounts.get(NODE_PATH) != REQUIREMENTS_FILE:
        problems.append(f"file_mounts: {NODE_PATH} must be {REQUIREMENTS_FILE} (the nodes' environment); fix: "
                        f"file_mounts: {{{NODE_PATH}: {REQUIREMENTS_FILE}}}")
    setup = config.get("setup_commands") or []
    if not any(re.search(rf"pip install .*-r {re.escape(NODE_PATH)}", c) for c in setup):
        problems.append(f"setup_commands never run `pip install -r {NODE_PATH}`: the nodes would lack medforge's "
                        "dependencies (the contexts job and /v1/medqa fail at import); fix: install that file")
    req = repo / REQUIREMENTS_FILE
    if (repo / "pyproject.toml").is_file() and (not req.is_file() or req.read_text() != render(repo / "pyproject.toml")):
        problems.append(f"{REQUIREMENTS_FILE} is not what pyproject.toml gives; fix: medforge cluster-requirements --write")
    return problems


def job_demands(path: Path) -> list:
    """The declared demand of one job config (teacher replicas or training workers), read from its raw YAML.

    Only the resource sections are validated: the rest names cluster paths that do not exist here.
    """
    from medforge.cluster.preflight import train_demand
    from medforge.engines.placement import vllm_demand
    from medforge.engines.config import VLLMTeacherConfig
    from medforge.train.config import ScalingSection

    raw = yaml.safe_load(path.read_text()) or {}
    demands = []

    def sections(node: Any, where: str):
        # every vLLM engine section (teacher, model.engine, judge.engine, a served llm.engine, ...) and
        # every Ray Train scaling section, at any depth (the pipeline config embeds the jobs' configs)
        if isinstance(node, dict):
            if (node.get("kind") == "vllm" and "model" in node) or where.endswith("llm.engine"):
                yield "engine", where, node
                return
            for key, value in node.items():
                child = f"{where}.{key}" if where else key
                if key == "scaling" and isinstance(value, dict):
                    yield "scaling", child, value
                else:
                    yield from sections(value, child)

    for kind, where, section in sections(raw, ""):
        if kind == "engine":
            # the model is not a resource: a folder on the cluster's shared mount does not exist here
            t = VLLMTeacherConfig(**{**section, "model": "<resources only>"})
            demands.append(vllm_demand(t, use_gpu=t.placement == "gpu", field=f"{path.name}: {where}"))
        else:
            d = train_demand(ScalingSection(**section))
            d.field = f"{path.name}: {where.removesuffix('scaling')}{d.field}"
            demands.append(d)
    return demands


def cross_check_problems(config: dict[str, Any], job_configs: list[Path]) -> list[str]:
    node_types = node_types_from_autoscaler_config(config)
    problems = []
    for path in job_configs:
        problems += demand_problems(job_demands(path), node_types, "this cluster file")
    return problems


def shipped_job_configs(repo: Path = REPO) -> list[Path]:
    return sorted({p for pattern in CLUSTER_JOB_CONFIGS for p in repo.glob(pattern)})


def check_cluster_file(path: str | Path, job_configs: list[Path] | None = None,
                       allow_placeholders: bool = False) -> list[str]:
    """Every problem of a cluster launcher file, at once (empty: ``ray up`` may go)."""
    path = Path(path)
    text = path.read_text()
    problems = [] if allow_placeholders else placeholder_problems(text, str(path))
    config = yaml.safe_load(text) or {}
    problems += ray_schema_problems(config)
    problems += exposure_problems(config)
    problems += environment_problems(config)
    problems += cross_check_problems(config, shipped_job_configs() if job_configs is None else job_configs)
    return problems


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge check-cluster", description=__doc__.split("\n")[0])
    parser.add_argument("cluster_yaml", help="the cluster launcher file, e.g. cluster.yaml")
    parser.add_argument("--job-config", action="append", default=None,
                        help="job configs whose demand must fit (default: configs/*/*cluster*.yaml)")
    parser.add_argument("--allow-placeholders", action="store_true", help="check the rest of a template")
    args = parser.parse_args(argv)
    jobs = [Path(p) for p in args.job_config] if args.job_config else None
    problems = check_cluster_file(args.cluster_yaml, jobs, args.allow_placeholders)
    if problems:
        print(f"{args.cluster_yaml}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    print(f"{args.cluster_yaml}: ok (Ray's schema, no placeholders, every cluster job's demand fits a node type)")
    return 0
