"""Deprecated: ``ray_jobs/contexts.py`` is this job's name since 0.2; this file goes in 0.3 (medforge-old-names)."""

import sys

from medforge.config.registry import deprecated
from medforge.contexts.job import main
from medforge.runtime import setup_logging

if __name__ == "__main__":
    setup_logging()
    print(deprecated("ray_jobs/generate_contexts.py", "ray_jobs/contexts.py"), file=sys.stderr)
    sys.exit(main(sys.argv[1:], prog="ray_jobs/contexts.py"))
