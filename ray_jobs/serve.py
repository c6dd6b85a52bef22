"""Serve the trained models on Ray Serve: the apps of a Ray Serve config file under configs/serve/.

Locally (starts its own Ray with 8 logical CPUs; tiny random LLaMA):
    MEDFORGE_API_KEYS=... .venv/bin/python ray_jobs/serve.py --config configs/serve/local_tiny.yaml

As a Ray job (the job's driver deploys the apps and stays up while they serve); on a local
`ray start --head`, where medforge is in the venv:
    ray job submit --working-dir . -- python ray_jobs/serve.py --config configs/serve/local_tiny.yaml
on a cluster (docs/cluster.md; deploy/runtime_env.yaml ships the medforge package to every worker):
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- \
        python ray_jobs/serve.py --config configs/serve/cluster.yaml

Same as ``medforge serve``, ``serve run configs/serve/<file>.yaml`` and ``serve deploy configs/serve/<file>.yaml``.
Overrides address one app's args: ``llm.engine.model=/models/export llm.autoscaling.max_replicas=4``.
"""

import sys

from medforge.runtime import setup_logging
from medforge.serve.cli import cli_main

if __name__ == "__main__":
    setup_logging()
    sys.exit(cli_main(sys.argv[1:]))
