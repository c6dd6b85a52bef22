"""medforge.ray_compat: the one home of private Ray APIs, and its Ray version check at import."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

import pytest

import medforge.ray_compat as ray_compat

SRC = Path(__file__).resolve().parents[2] / "src" / "medforge"
COMPAT = SRC / "ray_compat.py"
PRIVATE = re.compile(r"\bray(\.\w+)*\.(_internal|_private)\b|\bray\._")
INGRESS_PRIVATE = ("_get_model_id", "_get_configured_serve_handle")


def _import_fresh(monkeypatch, version: str | None):
    """Import a fresh copy of ray_compat (not the one in sys.modules) with the given installed Ray version."""

    def fake_version(name: str) -> str:
        if name != "ray":
            raise AssertionError(name)
        if version is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    spec = importlib.util.spec_from_file_location("medforge_ray_compat_fresh", COMPAT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("version", ["2.60.0", "2.60.3"])
def test_import_passes_on_the_ray_it_was_written_for(monkeypatch, version):
    assert _import_fresh(monkeypatch, version).RAY_WRITTEN_FOR == "2.60"


@pytest.mark.parametrize("version", ["2.61.0", "2.59.9", "3.60.0", "2.6.0", None])
def test_import_fails_on_another_ray_and_names_the_fix(monkeypatch, version):
    with pytest.raises(ImportError) as err:  # the fresh copy's own RayVersionError, an ImportError
        _import_fresh(monkeypatch, version)
    assert type(err.value).__name__ == "RayVersionError"
    message = str(err.value)
    assert "2.60" in message
    assert "pip install 'ray[data,train,serve]==2.60.0'" in message
    assert (f"Ray {version} is installed" if version else "no Ray is installed") in message


def test_the_requirement_is_the_pin_in_pyproject():
    pyproject = (SRC.parents[1] / "pyproject.toml").read_text()
    assert f'"{ray_compat.RAY_REQUIREMENT}"' in pyproject
    assert ray_compat.RAY_REQUIREMENT.endswith(f"=={ray_compat.RAY_WRITTEN_FOR}.0")


def test_the_installed_ray_passes():
    installed = ray_compat.installed_ray_version()
    ray_compat.check_ray_version(installed)
    import ray

    assert installed == ray.__version__


def test_importing_it_does_not_import_ray():
    """Light CLIs import modules that import ray_compat: the check must not cost a Ray import."""
    import subprocess

    code = ("import sys, medforge.ray_compat; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_no_other_module_uses_a_private_ray_api():
    """Every ``ray.*._internal`` / ``ray._private`` / ``ray.autoscaler._private`` use is in ray_compat.py,
    and so are the overrides of OpenAiIngress's private methods."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == COMPAT:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in INGRESS_PRIVATE:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: override of OpenAiIngress.{node.name}")
            elif isinstance(node, ast.ImportFrom) and node.module:
                name = node.module
            elif isinstance(node, ast.Import):
                name = ",".join(a.name for a in node.names)
            elif isinstance(node, ast.Attribute):
                name = ast.unparse(node)
            if name and PRIVATE.search(name):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {name}")
    assert offenders == []


def test_the_checker_sees_a_private_use():
    """The scan above is not blind: it flags what ray_compat itself holds."""
    tree = ast.parse(COMPAT.read_text())
    seen = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
            and PRIVATE.search(node.module)}
    assert "ray.autoscaler._private.util" in seen
    assert any("ray._private.state" in ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute))
    assert {n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)} >= set(INGRESS_PRIVATE)
