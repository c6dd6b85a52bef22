"""AlpaCare-style instruction synthesis: seeds -> tasks -> filters -> responses -> dataset.

Locally (starts its own Ray):
    .venv/bin/python ray_jobs/generate.py --config configs/generate/local_tiny.yaml

On a running cluster:
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- python ray_jobs/generate.py \
        --config configs/generate/cluster_llama3_70b.yaml

Any config key can be overridden: ``budget.target_tasks=1000 engine.concurrency=[1,8]``.
Rerun the same command to resume an interrupted run (see docs/resume.md).
"""

import sys

from medforge.generate.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":  # vLLM starts its engine core with spawn: keep the guard
    setup_logging()
    sys.exit(main(sys.argv[1:], prog="ray_jobs/generate.py"))
