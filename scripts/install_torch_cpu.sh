#!/usr/bin/env bash
# Install the CPU build of torch 2.13.0 into the Python given as $1 (default: .venv/bin/python).
#
# From, in this order:
#   1. a local wheel folder ($MEDFORGE_TORCH_WHEELS, default /opt/wheels) when it holds the wheel;
#   2. PyTorch's own CPU wheel index ($MEDFORGE_TORCH_INDEX_URL, default below).
# A plain `pip install torch==2.13.0` from PyPI would take the multi-GB CUDA build instead.
set -euo pipefail
PYBIN=${1:-.venv/bin/python}
VERSION=2.13.0
WHEELS=${MEDFORGE_TORCH_WHEELS:-/opt/wheels}
INDEX=${MEDFORGE_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}

have=$("$PYBIN" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ "$have" = "$VERSION+cpu" ]; then
  exit 0
fi
if ls "$WHEELS"/torch-"$VERSION"+cpu-*.whl >/dev/null 2>&1; then
  echo "[torch] installing torch $VERSION+cpu from the local wheel folder $WHEELS"
  "$PYBIN" -m pip install -q --find-links "$WHEELS" "torch==$VERSION+cpu" && exit 0
fi
echo "[torch] installing torch $VERSION+cpu from PyTorch's CPU index $INDEX (~200 MB)"
if "$PYBIN" -m pip install -q --extra-index-url "$INDEX" "torch==$VERSION+cpu"; then
  exit 0
fi
cat >&2 <<MSG
[torch] ERROR: could not install the CPU build of torch $VERSION.
  Tried: the local wheel folder $WHEELS (no torch-$VERSION+cpu wheel there) and PyTorch's CPU
  index $INDEX (unreachable or refused, see pip's message above).
  Fix: make one of them reachable, e.g. download torch-$VERSION+cpu for your Python from
  $INDEX/torch/ into a folder and run again with MEDFORGE_TORCH_WHEELS=/that/folder,
  or set MEDFORGE_TORCH_INDEX_URL to a mirror of PyTorch's CPU index.
  Do not install plain torch==$VERSION from PyPI: that is the multi-GB CUDA build.
MSG
exit 1
