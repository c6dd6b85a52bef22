"""Deprecated: ``ray_jobs/finetune.py`` is this job's name since 0.2; this file goes in 0.3 (medforge-old-names)."""

import sys

from medforge.config.registry import deprecated
from medforge.finetune.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    print(deprecated("ray_jobs/finetune_llm.py", "ray_jobs/finetune.py"), file=sys.stderr)
    sys.exit(main(sys.argv[1:], prog="ray_jobs/finetune.py"))
