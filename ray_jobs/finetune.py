"""Instruction-tune a causal LM (AlpaCare recipe) on Ray Train + DeepSpeed ZeRO.

Locally (starts its own Ray; tiny random model, CPU workers):
    .venv/bin/python ray_jobs/finetune.py --config configs/finetune/local_tiny.yaml

On a running cluster (LLaMA-2-7B, 8 GPUs, ZeRO-3):
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- python ray_jobs/finetune.py \
        --config configs/finetune/cluster_llama2_7b.yaml

Any config key can be overridden: ``optim.lr=1e-5 data.packing=true lora.enabled=true``.
Rerun the same command to resume from the latest checkpoint (checkpoint.storage_path/name).
"""

import sys

from medforge.runtime import setup_logging
from medforge.finetune.job import main

if __name__ == "__main__":
    setup_logging()
    sys.exit(main(sys.argv[1:], prog="ray_jobs/finetune.py"))
