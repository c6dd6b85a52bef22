"""Test-suite time, side by side: the same test groups at two commits, in one run (issue 25).

    .venv/bin/python bench/bench_suite.py --old bedee8b --new HEAD \\
        --group "generate=test_generate_small.py,test_generate_vllm.py:test_generate_small.py" \\
        --group "finetune=test_finetune.py,test_finetune_node_loss.py,test_cluster_storage.py"

A group is ``name=OLD_MODULES[:NEW_MODULES]`` (tests/integration/ file names, comma-separated; NEW
defaults to OLD): a check that moved between modules is timed where it lives at each commit. Each
commit is checked out in its own temporary worktree (``git worktree add --detach``) and run with
this interpreter (the project's venv) and that worktree's ``src`` on ``PYTHONPATH``; the groups run
old then new, one after the other, so both sides of a group see the same machine minutes apart.
Model caches are reused from ``MEDFORGE_TINY_MODELS`` / ``MEDFORGE_SMALL_MODELS`` when set.

Per side: the pytest process's wall time (imports, collection and the shared Ray's start
included) and each module's seconds from pytest's junit report (setup + call + teardown of its
tests), the counts of passed / failed / skipped tests. Results go to ``--results`` (JSON) and a
markdown table to stdout. Timings only: nothing here passes or fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_group(text: str) -> tuple[str, list[str], list[str]]:
    """``name=a.py,b.py[:c.py]`` -> (name, old modules, new modules)."""
    name, _, files = text.partition("=")
    if not name or not files:
        raise SystemExit(f"--group {text!r}: expected NAME=OLD_MODULES[:NEW_MODULES]")
    old, _, new = files.partition(":")
    split = lambda s: [f.strip() for f in s.split(",") if f.strip()]  # noqa: E731
    return name, split(old), split(new or old)


def junit_modules(path: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds per module and outcome counts from a pytest junit XML report."""
    seconds: dict[str, float] = {}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1] + ".py"
        seconds[module] = seconds.get(module, 0.0) + float(case.get("time", 0))
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {k: round(v, 1) for k, v in seconds.items()}, counts


def run_side(tree: Path, modules: list[str], report: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    argv = [sys.executable, "-m", "pytest", *[f"tests/integration/{m}" for m in modules], "-q", "-p", "no:cacheprovider",
            "--timeout=1800", f"--junitxml={report}", "-o", "junit_duration_report=total"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    wall = round(time.perf_counter() - t0, 1)
    seconds, counts = junit_modules(report) if report.is_file() else ({}, {})
    return {"modules": modules, "wall_s": wall, "module_s": seconds, "counts": counts, "rc": proc.returncode,
            "tail": proc.stdout[-1500:] if proc.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="the reference commit")
    ap.add_argument("--new", default="HEAD", help="the commit measured against it")
    ap.add_argument("--group", action="append", required=True, help="NAME=OLD_MODULES[:NEW_MODULES]")
    ap.add_argument("--results", default="/tmp/bench_suite.json")
    args = ap.parse_args()
    groups = [parse_group(g) for g in args.group]
    work = Path(tempfile.mkdtemp(prefix="bench_suite_"))
    trees = {}
    for side, rev in (("old", args.old), ("new", args.new)):
        trees[side] = work / side
        subprocess.run(["git", "worktree", "add", "--detach", str(trees[side]), rev], cwd=ROOT, check=True,
                       capture_output=True)
    results = {"old": args.old, "new": args.new, "groups": {}}
    try:
        for name, old_mods, new_mods in groups:
            res = {}
            for side, mods in (("old", old_mods), ("new", new_mods)):
                res[side] = run_side(trees[side], mods, work / f"{name}_{side}.xml")
                print(f"[bench_suite] {name} {side}: {res[side]['wall_s']} s {res[side]['counts']} rc={res[side]['rc']}",
                      flush=True)
            results["groups"][name] = res
            Path(args.results).write_text(json.dumps(results, indent=2))
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    print(f"\n| group | {args.old}: modules, s | {args.new}: modules, s | new / old |\n|---|---|---|---|")
    for name, res in results["groups"].items():
        cells = [", ".join(f"{m} {s}" for m, s in res[side]["module_s"].items()) + f" (process {res[side]['wall_s']})"
                 for side in ("old", "new")]
        print(f"| {name} | {cells[0]} | {cells[1]} | {res['new']['wall_s'] / res['old']['wall_s']:.2f}x |")


if __name__ == "__main__":
    main()
