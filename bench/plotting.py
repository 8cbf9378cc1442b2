"""The matplotlib pieces both scenarios' PNGs are made of: the figure, the responses scattered
by version, the failed requests, the legend beside the axes, the file.

Called by swap_report.plot and canary_plot.plot_canary. matplotlib is imported here, lazily and
with the Agg backend (no display; a run on a headless box must not fail for want of one), so a
bench module that does not plot never imports it. Versions keep one colour across both
scenarios' plots: v1 blue, v2 green, v5 (flaky) magenta, v6 (slow) orange.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from load_generator import Rec

VERSION_COLORS = {"1": "tab:blue", "2": "tab:green", "5": "magenta", "6": "tab:orange"}


def new_figure(
    rows: int, figsize: tuple[float, float], height_ratios: list[float], sharex: bool = False
) -> tuple[Any, Any]:
    """A headless figure of `rows` panels, one above the other: (figure, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(
        rows, 1, figsize=figsize, sharex=sharex, gridspec_kw={"height_ratios": height_ratios}
    )


def save_figure(fig: Any, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def side_legend(ax: Any, **kw: Any) -> None:
    """The legend to the right of the axes, out of the data's way."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, **kw)


def scatter_responses(ax: Any, ok: list[Rec], sparse_size: float, counts: bool) -> None:
    """Each successful response at (time answered, latency in ms), one colour per version;
    smaller and fainter dots above 2000 responses. `counts`: the legend says how many."""
    size, alpha = (4, 0.35) if len(ok) > 2000 else (sparse_size, 0.6)
    for version in sorted({r.version for r in ok if r.version}):
        mine = [r for r in ok if r.version == version]
        ax.scatter(
            [r.end for r in mine], [r.latency * 1000 for r in mine],
            s=size, alpha=alpha, color=VERSION_COLORS.get(version, "tab:gray"), linewidths=0,
            label=f"response from v{version}" + (f" ({len(mine)})" if counts else ""),
        )  # fmt: skip


def mark_failures(ax: Any, ok: list[Rec], bad: list[Rec], above: float) -> None:
    """Failed requests as red crosses at the time they failed, `above` x the slowest answer."""
    top = max([r.latency * 1000 for r in ok], default=1.0)
    if bad:
        ax.scatter(
            [r.end for r in bad], [top * above] * len(bad), marker="x", s=22,
            color="red", label=f"failed ({len(bad)})", zorder=5,
        )  # fmt: skip
