"""Free-form evaluation: the model's answers judged pairwise against references (AlpaCare's protocol).

Locally (starts its own Ray; tiny random model as model and judge, 10 MedInstruct-test items):
    .venv/bin/python ray_jobs/evaluate.py --config configs/evaluate/local_tiny.yaml

On a cluster (docs/cluster.md; deploy/runtime_env.yaml ships the medforge package to every worker):
    ray job submit --address http://127.0.0.1:8265 --runtime-env deploy/runtime_env.yaml -- \
        python ray_jobs/evaluate.py --config configs/evaluate/cluster.yaml

Overrides: ``data.max_items=50 answers.sampling.max_tokens=256``. Writes report.json/.md/.html,
PNG plots and verdicts.jsonl to output.dir; prints the win rates.
"""

import sys

from medforge.evaluate.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(main(sys.argv[1:], prog="ray_jobs/evaluate.py"))
