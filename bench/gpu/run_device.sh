#!/usr/bin/env bash
# One device session for issue 5's GPU goal: DeepSpeed ZeRO-2 vs a plain torch loop, same model.
# Usage on the GPU machine (wheels for deepspeed + its missing deps carried in .whl/):
#   bash bench/gpu/run_device.sh "$OUT"
set -u
OUT=${1:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
export PYTHONUNBUFFERED=1
timeout 260 python3 bench/gpu/bench_llm_mfu.py --micro-batch 8 --steps 30 --time-budget 200 2>&1 | tee "$OUT/zero2.log" | tail -3
timeout 200 python3 bench/gpu/bench_llm_mfu.py --micro-batch 8 --steps 30 --time-budget 150 --no-deepspeed 2>&1 | tee "$OUT/torch.log" | tail -3
