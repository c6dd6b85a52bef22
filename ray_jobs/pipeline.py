"""The whole AlpaCare loop as one job: generate -> fine-tune -> evaluate tuned vs base -> serve.

Locally (starts its own Ray; tiny random model, noise, a few minutes):
    .venv/bin/python ray_jobs/pipeline.py --config configs/pipeline/local_tiny.yaml

On a running cluster (paper scale; docs/pipeline.md):
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- \
        python ray_jobs/pipeline.py --config configs/pipeline/cluster.yaml

Rerun the same command to skip finished stages and resume the one that was killed. Overrides:
``finetune.optim.lr=1e-4`` (reruns fine-tune, evaluate, serve), ``--from evaluate``, ``--only serve``.
"""

import sys

from medforge.pipeline.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(main(sys.argv[1:], prog="ray_jobs/pipeline.py"))
