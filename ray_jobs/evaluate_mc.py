"""Multiple-choice evaluation of exported SLMs, with and without context, plus few-shot curves.

Locally:
    .venv/bin/python ray_jobs/evaluate_mc.py --config configs/evaluate_mc/local_tiny.yaml

On a local `ray start --head` (medforge is in the venv, so the checkout as working folder is enough;
a cluster submits with --runtime-env deploy/runtime_env.yaml, docs/cluster.md):
    ray job submit --working-dir . -- python ray_jobs/evaluate_mc.py --config configs/evaluate_mc/local_tiny.yaml

Writes report.json/.md/.html, accuracy plots and predictions.jsonl to output_dir.
"""

import sys

from medforge.evaluate.job import main_mc
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(main_mc(sys.argv[1:], prog="ray_jobs/evaluate_mc.py"))
