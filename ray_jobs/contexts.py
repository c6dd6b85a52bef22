"""Privacy-preserving contextual prompting: questions -> local keywords -> teacher contexts -> shards.

Locally (starts its own Ray):
    .venv/bin/python ray_jobs/contexts.py --config configs/contexts/local_tiny.yaml

On a running cluster:
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- python ray_jobs/contexts.py \
        --config configs/contexts/cluster_llama3_70b.yaml

Any config key can be overridden: ``input.max_rows=1000 engine.concurrency=[1,8]``.
Rerun the same command to resume an interrupted run (see docs/privacy.md).
"""

import sys

from medforge.contexts.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":  # vLLM starts its engine core with spawn: keep the guard
    setup_logging()
    sys.exit(main(sys.argv[1:], prog="ray_jobs/contexts.py"))
