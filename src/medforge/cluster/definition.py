"""Checks of a cluster launcher file (``cluster.yaml``) on its own, before ``ray up``.

What ``medforge check-cluster`` asks of the file itself (the command also checks the jobs' demand):

* Placeholders (``REPLACE-ME...``) left in: refused, each with its line.
* Ray's own schema check, as ``ray up`` runs it: ``prepare_config`` (fills the defaults) then
  ``validate_config`` -- on the raw file ``validate_config`` alone fails ("Missing
  'cluster_synced_files'").
* No dashboard or job server bound to every interface (reach it with ``ray dashboard``).
* The nodes install the project's environment: ``deploy/requirements-cluster.txt`` (generated from
  pyproject, :mod:`medforge.cluster.environment`) mounted and installed by ``setup_commands``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medforge.cluster.environment import NODE_PATH, REQUIREMENTS_FILE, render
from medforge.ray_compat import validate_cluster_config

PLACEHOLDER = re.compile(r"REPLACE-ME[\w-]*")
REPO = Path(__file__).resolve().parents[3]


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
    try:
        validate_cluster_config(config)
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
