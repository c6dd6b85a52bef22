"""Multiple-choice fine-tuning of a small encoder (BioLinkBERT-style), with or without generated context.

Locally (starts its own Ray; tiny random BERT, CPU workers):
    .venv/bin/python ray_jobs/finetune_mc.py --config configs/finetune_mc/local_tiny.yaml

On a running cluster (BioLinkBERT-base, MedQA with contexts, 3 seeds):
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- python ray_jobs/finetune_mc.py \
        --config configs/finetune_mc/cluster_biolinkbert.yaml

Overrides: ``data.use_context=false data.few_shot=100 seeds=[0,1,2]``. Prints mean/std accuracy over seeds.
"""

import sys

from medforge.runtime import setup_logging
from medforge.finetune.job import main_mc

if __name__ == "__main__":
    setup_logging()
    sys.exit(main_mc(sys.argv[1:], prog="ray_jobs/finetune_mc.py"))
