"""Synthetic data for tests, demos and benchmarks (no download needed).

* :func:`instruction_rows`: MedInstruct-like rows (instruction/input/output) whose lengths follow
  a lognormal distribution, like AlpaCare's generated data.
* :func:`mc_rows`: multiple-choice rows where **only the context** tells the answer: the correct
  option's context says so, the options themselves are random words. A model trained with
  context learns it; without context it cannot beat chance.

``medforge make-synthetic-mc --out DIR`` writes ``train/dev/test.jsonl`` of :func:`mc_rows` for the
offline multiple-choice quick start (``configs/finetune_mc/local_tiny.yaml``).
"""

from __future__ import annotations

import argparse
import math
import random
import string
from pathlib import Path
from typing import Any

from medforge.io import atomic_write_jsonl

WORDS = (
    "fever cough pain dose insulin asthma heart blood pressure patient symptom treatment infection "
    "kidney liver lung skin bone nerve brain therapy drug tablet chronic acute diagnosis clinical"
).split()


def instruction_rows(n: int, seed: int = 0, median_words: float = 60.0, sigma: float = 0.6) -> list[dict[str, Any]]:
    """``n`` rows; response lengths ~ lognormal(median_words, sigma) words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        n_out = max(3, int(rng.lognormvariate(math.log(median_words), sigma)))
        n_in = rng.choice([0, 0, rng.randint(3, 40)])
        rows.append(
            {
                "instruction": f"Explain the {rng.choice(WORDS)} in {rng.choice(WORDS)} for a {rng.choice(WORDS)} case.",
                "input": " ".join(rng.choice(WORDS) for _ in range(n_in)),
                "output": " ".join(rng.choice(WORDS) for _ in range(n_out)) + ".",
            }
        )
    return rows


def mc_rows(n: int, seed: int = 0, n_options: int = 4) -> list[dict[str, Any]]:
    """Rows whose answer is given away only by ``option_contexts``."""
    rng = random.Random(seed)
    labels = list(string.ascii_uppercase[:n_options])
    rows = []
    for i in range(n):
        ans = rng.choice(labels)
        rows.append(
            {
                "id": f"syn-{seed}-{i}",
                "question": f"Which {rng.choice(WORDS)} finding fits this {rng.choice(WORDS)} patient?",
                "options": {k: " ".join(rng.sample(WORDS, 2)) for k in labels},
                "answer": ans,
                "overall_context": f"The patient has {rng.choice(WORDS)}.",
                "option_contexts": {k: ("yes yes yes" if k == ans else "no no no") for k in labels},
            }
        )
    return rows


MC_SPLITS = {"train": (160, 0), "dev": (40, 1), "test": (80, 2)}  # rows, seed


def write_mc_splits(out_dir: str | Path) -> dict[str, Path]:
    """``train/dev/test.jsonl`` of :func:`mc_rows` (sizes and seeds in ``MC_SPLITS``) in ``out_dir``."""
    paths = {}
    for name, (n, seed) in MC_SPLITS.items():
        paths[name] = Path(out_dir) / f"{name}.jsonl"
        atomic_write_jsonl(paths[name], mc_rows(n, seed))
    return paths


def cli_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="medforge make-synthetic-mc",
                                 description="Synthetic multiple-choice splits where only the context tells the answer.")
    ap.add_argument("--out", default="runs/slm_synthetic", help="folder for train.jsonl, dev.jsonl, test.jsonl")
    args = ap.parse_args(argv)
    for name, path in write_mc_splits(args.out).items():
        print(f"{path}: {MC_SPLITS[name][0]} rows")
    return 0
