"""``medforge check-cluster``: a cluster launcher file (``cluster.yaml``) checked before ``ray up``.

* The file on its own (:mod:`medforge.cluster.definition`): placeholders (``REPLACE-ME...``)
  left in, Ray's own schema check as ``ray up`` runs it, no dashboard or job server bound to
  every interface, the nodes' environment (``deploy/requirements-cluster.txt``) installed.
* Every cluster job config's declared demand (vLLM engine replicas, Ray Train workers) fits a
  node type of this file (:func:`medforge.cluster.resources.demand_problems`).

It reads every job's config, so it stands above the jobs' config modules (engines, train), which
themselves build on :mod:`medforge.cluster`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from medforge.cluster.definition import (
    REPO,
    environment_problems,
    exposure_problems,
    placeholder_problems,
    ray_schema_problems,
)
from medforge.cluster.resources import (
    demand_problems,
    node_types_from_autoscaler_config,
)
from medforge.engines.config import VLLMTeacherConfig
from medforge.engines.placement import vllm_demand
from medforge.finetune.config import ScalingSection
from medforge.finetune.placement import train_demand

CLUSTER_JOB_CONFIGS = ("configs/*/cluster_*.yaml", "configs/*/*_cluster_*.yaml", "configs/*/cluster.yaml")


def job_demands(path: Path) -> list:
    """The declared demand of one job config (teacher replicas or training workers), read from its raw YAML.

    Only the resource sections are validated: the rest names cluster paths that do not exist here.
    """
    raw = yaml.safe_load(path.read_text()) or {}
    demands = []

    def sections(node: Any, where: str):
        # every vLLM engine section (engine, judge.engine, a served llm.engine, ...) and
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
    # configs/serve/ holds Ray Serve files (applications, not a job's config): not a job demand
    return sorted({p for pattern in CLUSTER_JOB_CONFIGS for p in repo.glob(pattern) if p.parent.name != "serve"})


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
    placeholders = "placeholders not checked" if args.allow_placeholders else "no placeholders"
    print(f"{args.cluster_yaml}: ok (Ray's schema, {placeholders}, the nodes' environment, "
          "every cluster job's demand fits a node type)")
    return 0
