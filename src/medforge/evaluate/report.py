"""Report files: ``report.json`` (the numbers), ``report.md`` and ``report.html`` (for people), PNG plots.

``report.json`` is documented field by field in docs/evaluation.md. The Markdown and HTML say the
same numbers in tables, and embed the plots: win rate with its 95% CI per reference (and per
difficulty), and multiple-choice accuracy against the number of training examples.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from medforge.evaluate.refscores import NOTE
from medforge.evaluate.stats import reliability_line
from medforge.io import atomic_write_text


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _ci(ci: list[float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _json_safe(obj: Any) -> Any:
    """NaN -> null (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, labels: list[str], values: list[float], cis: list[list[float]], color: str) -> None:
    vals = [100 * (v if v is not None and not math.isnan(v) else 0.0) for v in values]
    lo = [max(0.0, v - 100 * (c[0] if c[0] is not None and not math.isnan(c[0]) else v / 100)) for v, c in zip(vals, cis, strict=True)]
    hi = [max(0.0, 100 * (c[1] if c[1] is not None and not math.isnan(c[1]) else v / 100) - v) for v, c in zip(vals, cis, strict=True)]
    ax.bar(labels, vals, yerr=[lo, hi], capsize=4, color=color)
    for i, v in enumerate(vals):
        ax.text(i, v + 1, f"{v:.1f}", ha="center", va="bottom", fontsize=8)


def plot_win_rates(report: dict[str, Any], out: Path) -> list[str]:
    """``win_rate.png`` (per reference, with CI and the length-controlled rate) and ``win_rate_by_difficulty.png``."""
    plt = _plt()
    refs = report["references"]
    files = []
    if refs:
        names = list(refs)
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names)), 4))
        _bars(ax, names, [refs[n]["win_rate"] for n in names], [refs[n]["ci95"] for n in names], "tab:blue")
        lc = [100 * refs[n]["lc_win_rate"] if refs[n]["lc_win_rate"] is not None and not math.isnan(refs[n]["lc_win_rate"]) else float("nan") for n in names]
        ax.plot(range(len(names)), lc, "D", color="tab:orange", label="length-controlled")
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 105)
        ax.set_ylabel("win rate vs reference (%)")
        unusable = [n for n in names if not (refs[n].get("judge_reliability") or {"usable": True})["usable"]]
        ax.set_title(f"{report['model']} judged by {report['judge']}"
                     + ("\nJUDGE NOT USABLE HERE (see report): not a result" if unusable else ""), fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
        plt.setp(ax.get_xticklabels(), rotation=15, ha="right")
        fig.tight_layout()
        fig.savefig(out / "win_rate.png", dpi=100)
        plt.close(fig)
        files.append("win_rate.png")
    with_diff = [n for n in refs if refs[n].get("by_difficulty")]
    if with_diff:
        fig, axes = plt.subplots(1, len(with_diff), figsize=(4 * len(with_diff), 3.6), squeeze=False)
        for ax, n in zip(axes[0], with_diff, strict=True):
            bd = refs[n]["by_difficulty"]
            ds = sorted(bd)
            _bars(ax, ds, [bd[d]["win_rate"] for d in ds], [bd[d]["ci95"] for d in ds], "tab:green")
            ax.axhline(50, color="grey", lw=0.8, ls="--")
            ax.set_ylim(0, 105)
            ax.set_xlabel("difficulty")
            ax.set_title(n, fontsize=9)
        axes[0][0].set_ylabel("win rate (%)")
        fig.tight_layout()
        fig.savefig(out / "win_rate_by_difficulty.png", dpi=100)
        plt.close(fig)
        files.append("win_rate_by_difficulty.png")
    return files


def judge_warning(report: dict[str, Any]) -> list[str]:
    """Lines that go above every win rate: the judge's reliability verdict per reference."""
    rels = {n: r.get("judge_reliability") for n, r in report["references"].items() if r.get("judge_reliability")}
    if not rels:
        return []
    bad = [n for n, rel in rels.items() if not rel["usable"]]
    lines = []
    if bad:
        lines += [f"**The judge is NOT usable here** (reference{'s' if len(bad) > 1 else ''} {', '.join(bad)}): "
                  "the win rates below do not tell which answers are better. Read the reference-based scores "
                  "further down instead (thresholds: docs/evaluation.md).", ""]
    lines += [f"- {n}: {reliability_line(rel)}" for n, rel in rels.items()]
    return lines + [""]


def _score(block: dict[str, Any] | None) -> str:
    if not block:
        return "not computed"
    return f"{block['mean']:.3f} [{block['ci95'][0]:.3f}, {block['ci95'][1]:.3f}]" if block["n"] else "n/a"


def reference_score_lines(report: dict[str, Any]) -> list[str]:
    rows = {n: r["reference_scores"] for n, r in report["references"].items() if r.get("reference_scores")}
    if not rows:
        return []

    lines = ["", "## Reference-based scores", "", f"Deterministic, judge-free: {NOTE}. Mean over items with a 95% bootstrap CI; "
             "ROUGE-L F1 uses the novelty filter's exact kernel, embedding similarity is the cosine of mean-pooled "
             "sentence embeddings. An empty answer scores 0.", "",
             "| reference | items | ROUGE-L F1 | embedding cosine |", "|---|---|---|---|"]
    for n, b in rows.items():
        items = (b.get("rouge_l") or b.get("embedding_cosine") or {"n": 0})["n"]
        lines.append(f"| {n} | {items} | {_score(b.get('rouge_l'))} | {_score(b.get('embedding_cosine'))} |")
    emb = next((b["embedding_model"] for b in rows.values() if b.get("embedding_model")), None)
    if emb:
        lines.append(f"\nEmbedding model: `{emb}`.")
    return lines


def freeform_markdown(report: dict[str, Any], plots: list[str]) -> str:
    a, jc = report["answers"], report["judge_calls"]
    lines = [
        f"# Evaluation: {report['model']}",
        "",
        *judge_warning(report),
        f"Judge: **{report['judge']}** (prompt `{report['judge_prompt_hash']}`, structured output: {report['structured_output']}); "
        f"test set `{report['test_path']}` ({report['format']}, {report['n_items']} items). Every pair is judged in both orders; "
        "win = 1, tie = 0.5, loss = 0, averaged over the orders, then over the items. CI: bootstrap 95% over items.",
        "",
        "| reference | judge | order consistency % | items | scored | win rate % | 95% CI | LC win rate % | ties | unparsed | first-position % | mean length model / ref (chars) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["references"].items():
        ml = r["mean_length"]
        rel = r.get("judge_reliability") or {}
        usable = "n/a" if not rel else ("usable" if rel["usable"] else "**NOT usable**")
        lines.append(f"| {name} | {usable} | {_pct(rel.get('consistency'))} | {r['n_items']} | {r['n_scored']} | {_pct(r['win_rate'])} | "
                     f"{_ci(r['ci95'])} | {_pct(r['lc_win_rate'])} | "
                     f"{r['ties']} | {r['unparsed']} | {_pct(r['first_position_rate'])} | {ml['model']:.0f} / {ml['reference']:.0f} |")
    lines += ["", "Per order (judged = wins + ties + losses + unparsed):", "",
              "| reference | order | judged | wins | ties | losses | unparsed |", "|---|---|---|---|---|---|---|"]
    for name, r in report["references"].items():
        for order, c in r["per_order"].items():
            lines.append(f"| {name} | {order} | {c['judged']} | {c['wins']} | {c['ties']} | {c['losses']} | {c['unparsed']} |")
    diff_refs = [n for n, r in report["references"].items() if r.get("by_difficulty")]
    if diff_refs:
        lines += ["", "By difficulty (win rate % [95% CI], n):", "", "| reference | " + " | ".join(
            sorted(report["references"][diff_refs[0]]["by_difficulty"])) + " |",
                  "|---|" + "---|" * len(report["references"][diff_refs[0]]["by_difficulty"])]
        for n in diff_refs:
            bd = report["references"][n]["by_difficulty"]
            lines.append(f"| {n} | " + " | ".join(f"{_pct(bd[d]['win_rate'])} {_ci(bd[d]['ci95'])}, {bd[d]['n']}" for d in sorted(bd)) + " |")
    lines += reference_score_lines(report)
    lines += ["", "## Answers and judge calls", "",
              f"- answers: {a['requested']} requested, {a['cached']} from cache, {a['generated']} generated; "
              f"{a['errors']} failed (left out), {a['missing']} missing, {a['empty']} empty (counted as losses), "
              f"{a['truncated']} cut at max_tokens={a['max_tokens']} (judged as they are)",
              f"- judge calls: {jc['requested']} needed, {jc['cached']} from cache, {jc['made']} made, {jc['errors']} failed",
              "- per-item verdicts with the judge's words: `verdicts.jsonl`; answers: `answers.jsonl`"]
    missing = {k: len(v) for k, v in report["quarantine"]["missing_reference"].items()}
    if missing:
        lines.append(f"- items without a reference (left out of that reference): {missing}")
    lines += [""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def markdown_to_html(md: str, title: str) -> str:
    """A small, dependency-free rendering of the report's own Markdown (headings, tables, lists, images)."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>"]
    in_table = in_list = False

    def inline(text: str) -> str:
        import re

        t = html.escape(text)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", t)

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                out.append("<tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells) + "</tr>")
                in_table = True
                continue
            out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            out.append(f"<p><img src='{html.escape(src)}' alt='{html.escape(src)}'></p>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _write_all(report: dict[str, Any], out: Path, md: str, title: str) -> None:
    atomic_write_text(out / "report.json", json.dumps(_json_safe(report), indent=2, ensure_ascii=False))
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", markdown_to_html(md, title))


def write_freeform_report(report: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_win_rates(report, out)
    report["plots"] = plots
    _write_all(report, out, freeform_markdown(report, plots), f"Evaluation: {report['model']}")


def plot_few_shot(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Accuracy (mean +- std over seeds) against the number of training examples, one line per setting."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in curves.items():
        pts = sorted(pts, key=lambda p: p["shots"])
        ax.errorbar([p["shots"] for p in pts], [100 * p["mean_accuracy"] for p in pts],
                    yerr=[100 * p["std_accuracy"] for p in pts], marker="o", capsize=4, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("Multiple-choice accuracy against the number of shots")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mc_accuracy(results: list[dict[str, Any]], path: Path) -> None:
    """Accuracy per (model, dataset), with and without context side by side."""
    plt = _plt()
    keys = sorted({(r["model"], r["dataset"]) for r in results})
    settings = sorted({r["context"] for r in results})
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(keys)), 4))
    width = 0.8 / max(len(settings), 1)
    for j, s in enumerate(settings):
        vals = []
        for k in keys:
            hit = [r for r in results if (r["model"], r["dataset"]) == k and r["context"] == s]
            vals.append(100 * hit[0]["accuracy"] if hit and hit[0]["accuracy"] is not None else 0.0)
        ax.bar([i + j * width for i in range(len(keys))], vals, width, label=f"context: {s}")
    ax.set_xticks([i + width * (len(settings) - 1) / 2 for i in range(len(keys))], [f"{m}\n{d}" for m, d in keys], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_mc_report(report: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if report["results"]:
        plot_mc_accuracy(report["results"], out / "mc_accuracy.png")
        plots.append("mc_accuracy.png")
    if report["few_shot"]:
        plot_few_shot(report["few_shot"], out / "few_shot.png")
        plots.append("few_shot.png")
    report["plots"] = plots
    lines = ["# Multiple-choice evaluation", ""]
    if report["results"]:
        lines += ["| model | dataset | context | questions | scored | accuracy % | truncated | quarantined |", "|---|---|---|---|---|---|---|---|"]
        for r in report["results"]:
            lines.append(f"| {r['model']} | {r['dataset']} | {r['context']} | {r['n_rows']} | {r['n_scored']} | {_pct(r['accuracy'])} | "
                         f"{r['truncated']} | {r['quarantined']} |")
    if report["few_shot"]:
        lines += ["", "Few-shot (mean ± std over seeds):", "", "| setting | shots | seeds | accuracy % |", "|---|---|---|---|"]
        for label, pts in report["few_shot"].items():
            for p in sorted(pts, key=lambda p: p["shots"]):
                lines.append(f"| {label} | {p['shots']} | {p['n_seeds']} | {_pct(p['mean_accuracy'])} ± {_pct(p['std_accuracy'])} |")
    lines += ["", "- per-question predictions and probabilities: `predictions.jsonl`; quarantined rows: `quarantine.jsonl`", ""]
    lines += [f"![{p}]({p})" for p in plots]
    _write_all(report, out, "\n".join(lines) + "\n", "Multiple-choice evaluation")
