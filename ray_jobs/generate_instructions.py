"""Deprecated: ``ray_jobs/generate.py`` is this job's name since 0.2; this file goes in 0.3 (medforge-old-names)."""

import sys

from medforge.config.registry import deprecated
from medforge.generate.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    print(deprecated("ray_jobs/generate_instructions.py", "ray_jobs/generate.py"), file=sys.stderr)
    sys.exit(main(sys.argv[1:], prog="ray_jobs/generate.py"))
