"""Multiple-choice fine-tuning of a small encoder (BioLinkBERT-style), with or without generated context.

Locally (starts its own Ray; tiny random BERT, CPU workers):
    .venv/bin/python ray_jobs/finetune_slm.py --config configs/finetune/slm_local_tiny.yaml

On a running cluster (BioLinkBERT-base, MedQA with contexts, 3 seeds):
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- python ray_jobs/finetune_slm.py \
        --config configs/finetune/slm_cluster_biolinkbert.yaml

Overrides: ``data.use_context=false data.few_shot=100 seeds=[0,1,2]``. Prints mean/std accuracy over seeds.
"""

import sys

from medforge.runtime import setup_logging
from medforge.train.job import main_slm

if __name__ == "__main__":
    setup_logging()
    sys.exit(main_slm(sys.argv[1:], prog="ray_jobs/finetune_slm.py"))
