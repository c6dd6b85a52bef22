"""Draw the autoscaled burst: worker nodes and API client actors over time (docs/img/autoscale_burst.svg).

The series comes from tests/integration/test_autoscale.py, which samples the cluster every 0.5 s:

    MEDFORGE_BURST_SERIES=bench/out/autoscale_burst.json \\
        PYTHONPATH=$PWD/src:$PWD/tests .venv/bin/python -m pytest tests/integration/test_autoscale.py
    .venv/bin/python bench/plot_burst.py bench/out/autoscale_burst.json docs/img/autoscale_burst.svg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def plot(series: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = series["samples"]
    t = [s["t"] for s in samples]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.step(t, [s["worker_nodes"] for s in samples], where="post", lw=2,
            label=f"{series['node_type']} worker nodes (max_workers {series['max_workers']})")
    ax.step(t, [s["client_actors"] for s in samples], where="post", lw=1.5, ls="--",
            label="API client actors (engine.concurrency [1, 4])")
    top = series["max_workers"] + 0.6
    merged: list[list] = []  # events less than 2 s apart share one line
    for when, what in series.get("events", []):
        if merged and when - merged[-1][0] < 2:
            merged[-1][1] += " / " + what
        else:
            merged.append([when, what])
    for when, what in merged:
        ax.axvline(when, color="grey", lw=0.8, ls=":")
        ax.text(when, -0.15, " " + what, rotation=90, va="bottom", ha="right", fontsize=7, color="dimgrey")
    ax.set_ylim(-0.2, top)
    ax.set_yticks(range(series["max_workers"] + 1))
    ax.set_xlabel("seconds since the cluster came up (head only)")
    ax.set_ylabel("count")
    ax.set_title(f"Autoscaled burst on Ray's fake multi-node provider (idle timeout {series['idle_timeout_s']:g} s)",
                 fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Date": None})  # no timestamp: the file changes only when the data does
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("series", type=Path, help="JSON written by test_autoscale.py (MEDFORGE_BURST_SERIES)")
    ap.add_argument("out", type=Path, help="image to write (.svg or .png)")
    args = ap.parse_args()
    plot(json.loads(args.series.read_text()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
