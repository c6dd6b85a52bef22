"""Cards as plain data, rendered to Hugging Face-style markdown and to HTML with PNG plots.

A :class:`Card` holds YAML metadata, sections of markdown and plots (PNG bytes). The renderers
are pure: :func:`to_markdown` and :func:`to_html` return text, the plot helpers return PNG bytes
(matplotlib, Agg backend, imported where used; without it a card has no plots and says so).
:func:`write_card` writes ``card.md``, ``card.html`` and ``card_plots/*.png`` atomically.
"""

from __future__ import annotations

import html
import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medforge.io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

PLOTS_DIR = "card_plots"
_MARKER = re.compile(r"\{\{plot:[\w.-]+\}\}")


@dataclass
class Card:
    """One dataset or model card.

    Attributes:
        title: the card's heading.
        metadata: the YAML front matter (Hugging Face card metadata: license, tags, task_categories ...).
        sections: ``(heading, markdown)`` in order.
        plots: ``{name: png bytes}``; a section refers to one as ``{{plot:name}}``.
        notes: lines shown under the title (how the card was made, what is missing).
    """

    title: str
    metadata: dict[str, Any] = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _plot_ref(name: str, markdown: bool) -> str:
    path = f"{PLOTS_DIR}/{name}.png"
    return f"![{name}]({path})" if markdown else f'<img src="{path}" alt="{html.escape(name)}">'


def _with_plots(body: str, card: Card, markdown: bool) -> str:
    for name in card.plots:
        body = body.replace("{{plot:%s}}" % name, _plot_ref(name, markdown))
    # a plot that could not be drawn (no matplotlib, no data) leaves no broken link behind
    return _MARKER.sub("", body)


def to_markdown(card: Card) -> str:
    """``---`` YAML front matter ``---``, then the title, notes and sections (a HF README.md)."""
    meta = yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True).strip()
    parts = [f"---\n{meta}\n---", f"# {card.title}"]
    parts += [f"> {n}" for n in card.notes]
    for heading, body in card.sections:
        parts.append(f"## {heading}\n\n{_with_plots(body, card, markdown=True).strip()}")
    return "\n\n".join(parts) + "\n"


def _md_to_html(body: str) -> str:
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # plain text is still readable
        return f"<pre>{html.escape(body)}</pre>"
    return MarkdownIt("commonmark").enable("table").render(body)


def to_html(card: Card) -> str:
    """A self-contained page (plots linked from ``card_plots/``)."""
    meta = html.escape(yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True))
    body = [f"<h1>{html.escape(card.title)}</h1>"]
    body += [f"<p class='note'>{html.escape(n)}</p>" for n in card.notes]
    body.append(f"<details><summary>metadata</summary><pre>{meta}</pre></details>")
    for heading, text in card.sections:
        rendered = _md_to_html(text)  # "{{plot:name}}" is plain text to markdown: replaced after it
        body.append(f"<section><h2>{html.escape(heading)}</h2>{_with_plots(rendered, card, markdown=False)}</section>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;font-size:90%}"
             "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}.note{color:#555;font-style:italic}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(card.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_card(folder: str | Path, card: Card, stem: str = "card") -> Path:
    """Write ``<stem>.md``, ``<stem>.html`` and the plots under ``folder``; returns the markdown path."""
    folder = Path(folder)
    for name, png in card.plots.items():
        atomic_write_bytes(folder / PLOTS_DIR / f"{name}.png", png)
    atomic_write_text(folder / f"{stem}.html", to_html(card))
    path = folder / f"{stem}.md"
    atomic_write_text(path, to_markdown(card))
    return path


# ----------------------------------------------------------------------------- tables and text
def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; cells are flattened to one line and ``|`` is escaped."""
    def cell(v: Any) -> str:
        return str(v).replace("\n", " ").replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def counts_table(counts: Mapping[Any, int], key: str, top: int | None = None) -> str:
    total = sum(counts.values()) or 1
    items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]
    return md_table([key, "rows", "share"], [(k, v, f"{100 * v / total:.1f}%") for k, v in items])


def clip(text: Any, n: int = 300) -> str:
    t = str(text or "")
    return t if len(t) <= n else t[:n] + " ..."


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """min, median, p90, max and mean of ``values`` (zeros when empty)."""
    if not values:
        return {"n": 0, "min": 0, "median": 0, "p90": 0, "max": 0, "mean": 0}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]  # noqa: E731
    return {"n": len(v), "min": v[0], "median": pick(0.5), "p90": pick(0.9), "max": v[-1],
            "mean": round(sum(v) / len(v), 2)}


# ----------------------------------------------------------------------------- plots
def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plots_available() -> bool:
    return _pyplot() is not None


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def barh_png(counts: Mapping[Any, float], title: str, top: int = 20, xlabel: str = "rows") -> bytes | None:
    """Horizontal bars, largest first (``None`` without matplotlib or data)."""
    plt = _pyplot()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]
    if plt is None or not items:
        return None
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.28 * len(items)))
    labels = [clip(k, 40) for k, _ in items][::-1]
    ax.barh(labels, [v for _, v in items][::-1], color="#4c78a8")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def hist_png(series: Mapping[str, Sequence[float]], title: str, xlabel: str, bins: int = 30,
             range_: tuple[float, float] | None = None) -> bytes | None:
    """Overlaid histograms, one per named series (``None`` without matplotlib or data)."""
    plt = _pyplot()
    series = {k: list(v) for k, v in series.items() if len(v)}
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, values in series.items():
        ax.hist(values, bins=bins, range=range_, alpha=0.55, label=f"{name} (n={len(values)})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    return _png(fig)


def stacked_png(by_x: Mapping[int, Mapping[str, int]], title: str, xlabel: str, top: int = 8) -> bytes | None:
    """Stacked bars: x (round, chunk) -> counts per key (the ``top`` keys; the rest as ``other``)."""
    plt = _pyplot()
    if plt is None or not by_x:
        return None
    totals: dict[str, int] = {}
    for counts in by_x.values():
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    keys = [k for k, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]
    xs = sorted(by_x)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    bottom = [0] * len(xs)
    for k in keys + (["other"] if len(totals) > top else []):
        vals = [sum(v for kk, v in by_x[x].items() if kk not in keys) if k == "other" else by_x[x].get(k, 0) for x in xs]
        ax.bar(xs, vals, bottom=bottom, label=k)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rejected")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def line_png(points: Sequence[tuple[float, float]], title: str, xlabel: str, ylabel: str) -> bytes | None:
    plt = _pyplot()
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([x for x, _ in points], [y for _, y in points], marker=".")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png(fig)


def plotter(card: Card, plots: bool) -> Callable[[str, Callable[[], bytes | None]], str]:
    """``P(name, draw)``: draws and registers a plot (its ``{{plot:name}}`` marker) when ``plots`` is
    wanted and matplotlib is installed, else returns "" without drawing. A card that wanted plots
    but cannot have them says why in its notes."""
    if plots and not plots_available():
        card.notes.append("matplotlib is not installed: no plots (pip install matplotlib).")
        plots = False

    def draw_plot(name: str, draw: Callable[[], bytes | None]) -> str:
        return add_plot(card, name, draw()) if plots else ""

    return draw_plot


def add_plot(card: Card, name: str, png: bytes | None) -> str:
    """Register ``png`` under ``name``; returns the ``{{plot:name}}`` marker (empty when there is no plot)."""
    if png is None:
        return ""
    card.plots[name] = png
    return "{{plot:%s}}" % name
