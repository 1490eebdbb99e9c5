"""PNG plots of a benchmark run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def speedup_bars(summaries: Sequence[Any], out: Path, title: str) -> Path:
    """Speed-up over our greedy loop per method: aggregate and median of per-prompt ratios."""
    plt = _pyplot()
    names = [s.label for s in summaries]
    agg = [s.speedup_vs_greedy for s in summaries]
    med = [s.speedup_vs_greedy_median for s in summaries]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5), dpi=110)
    y = range(len(names))
    ax.barh([i - 0.2 for i in y], agg, height=0.4, label="aggregate (total time)")
    ax.barh([i + 0.2 for i in y], med, height=0.4, label="median of per-prompt ratios")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up vs our greedy loop (x)")
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def tokens_per_step_boxes(summaries: Sequence[Any], out: Path, title: str) -> Path:
    """The distribution over prompts of tokens accepted per step, per speculative method."""
    plt = _pyplot()
    shown = [s for s in summaries if s.tokens_per_step_per_prompt and s.tokens_per_step > 1.0]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(len(shown), 1) + 1.5), dpi=110)
    if shown:
        import matplotlib

        # "orientation" replaced "vert" in matplotlib 3.10
        horizontal = ({"orientation": "horizontal"} if tuple(map(int, matplotlib.__version__.split(".")[:2])) >= (3, 10)
                      else {"vert": False})
        ax.boxplot([s.tokens_per_step_per_prompt for s in shown], tick_labels=[s.label for s in shown], **horizontal)
        ax.invert_yaxis()
    ax.set_xlabel("tokens per verification step (per prompt)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def lines(curves: dict[str, list[tuple[float, float]]], out: Path, title: str, xlabel: str, ylabel: str,
          baseline: float | None = None) -> Path:
    """One line per curve, log-scale x (sizes), an optional horizontal baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, pts in curves.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if baseline is not None:
        ax.axhline(baseline, color="black", linewidth=0.8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def speedup_vs_store(points: dict[str, list[tuple[int, float]]], out: Path, title: str) -> Path:
    """Speed-up against datastore size (corpus tokens, log scale), one line per method."""
    return lines(points, out, title, "corpus tokens in the datastore", "speed-up vs our greedy loop (x)", 1.0)


def tokens_per_step_vs_bytes(curves: dict[str, list[tuple[int, float]]], out: Path, title: str) -> Path:
    """Tokens per step against index bytes on disk (MB, log scale), one curve per kind of tier."""
    mb = {name: [(b / 1e6, t) for b, t in pts] for name, pts in curves.items()}
    return lines(mb, out, title, "index bytes on disk (MB)", "tokens per verification step")
