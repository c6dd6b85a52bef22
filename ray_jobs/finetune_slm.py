"""Deprecated: ``ray_jobs/finetune_mc.py`` is this job's name since 0.2; this file goes in 0.3 (medforge-old-names)."""

import sys

from medforge.config.registry import deprecated
from medforge.finetune.job import main_mc
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    print(deprecated("ray_jobs/finetune_slm.py", "ray_jobs/finetune_mc.py"), file=sys.stderr)
    sys.exit(main_mc(sys.argv[1:], prog="ray_jobs/finetune_mc.py"))
