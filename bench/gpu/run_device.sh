#!/usr/bin/env bash
# One device session for issue 5's GPU goal: DeepSpeed ZeRO-2 vs a plain torch loop, same model.
# Usage on the GPU machine. Its image has torch + transformers but no deepspeed/pydantic: carry
# wheels in .whl/ (deepspeed==0.19.8 built with `pip wheel --no-deps`, hjson, pydantic==2.14.4,
# pydantic-core==2.50.5, annotated-types, typing-inspection, typing_extensions for cp312):
#   bash bench/gpu/run_device.sh "$OUT"
set -u
OUT=${1:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  rm -rf /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
export PYTHONUNBUFFERED=1
timeout 260 python3 bench/gpu/bench_llm_mfu.py --micro-batch 8 --steps 30 --time-budget 200 2>&1 | tee "$OUT/zero2.log" | tail -3
timeout 260 python3 bench/gpu/bench_llm_mfu.py --micro-batch 16 --steps 20 --time-budget 200 2>&1 | tee "$OUT/zero2_mb16.log" | tail -3
timeout 200 python3 bench/gpu/bench_llm_mfu.py --micro-batch 8 --steps 30 --time-budget 150 --no-deepspeed 2>&1 | tee "$OUT/torch.log" | tail -3
