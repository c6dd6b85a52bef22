"""Long fuzzing run of every outside-text parser (issue 13); figures go to docs/reliability.md.

    PYTHONPATH=src:tests python bench/fuzz_parsers.py --examples 1000

Runs ``tests/unit/fuzz/test_fuzz_parsers.py`` with ``MEDFORGE_FUZZ_EXAMPLES`` inputs per target
and random (not derandomised) generation, and prints how many inputs each parser was given
(counted inside the tests, so shrinking and replays are included) and the pytest outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1000, help="inputs per target (hypothesis max_examples)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "MEDFORGE_FUZZ_EXAMPLES": str(args.examples), "MEDFORGE_FUZZ_RANDOM": "1",
               "MEDFORGE_FUZZ_REPORT": str(report)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               str(ROOT / "tests/unit/fuzz/test_fuzz_parsers.py")], env=env, cwd=ROOT)
        counts = json.loads(report.read_text()) if report.is_file() else {}
    print(json.dumps({"examples_per_target": args.examples, "pytest_exit": proc.returncode,
                      "wall_s": round(time.perf_counter() - t0, 1), "inputs_tried": counts,
                      "total": sum(counts.values())}, indent=2))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
