"""Agg figures of the entries: one way to make, style and save every plot.

Plots are drawn on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state). An
entry's figure is saved by ``save_plot`` with the scale and published-claim footer and a
``<stem>.json`` beside the PNG that lists every plotted series (name → x, y), so tests and
readers can check what a PNG shows. ``style_axes`` is the one axis styling of every panel,
the quadratic study's included (``tfwd.experiments.paper002.quadratic``).
"""
from __future__ import annotations

import json
import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfwd.experiments.spec import Artifact

TITLE_FONT_SIZE = 9
LEGEND_FONT_SIZE = 7


def new_figure(rows: int, columns: int, *, width: float = 5.0, height: float = 3.8):
    """A Figure (Agg) and its 2-D array of axes, with room for ``save_plot``'s footer."""
    figure = Figure(figsize=(width * columns, height * rows + 1.2))
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def style_axes(axes, *, title: str | None = None, xlabel: str | None = None,
               ylabel: str | None = None, log_y: bool = False,
               legend_size: float | None = LEGEND_FONT_SIZE, legend_loc: str | None = None,
               title_size: float = TITLE_FONT_SIZE) -> None:
    """Title, axis labels, a log y axis, and a legend when some line has a label.

    ``legend_size=None`` draws no legend (panels whose lines explain themselves)."""
    if title is not None:
        axes.set_title(title, fontsize=title_size)
    if xlabel is not None:
        axes.set_xlabel(xlabel)
    if ylabel is not None:
        axes.set_ylabel(ylabel)
    if log_y:
        axes.set_yscale("log")
    if legend_size is not None and axes.get_legend_handles_labels()[0]:
        options = {} if legend_loc is None else {"loc": legend_loc}
        axes.legend(fontsize=legend_size, **options)


def write_png(figure: Figure, path, dpi: int = 100) -> str:
    """Render ``figure`` with the Agg canvas to the PNG ``path`` (folders made); its path."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=dpi)
    return path


def _add_footer(figure: Figure, title: str, lines: list[str]) -> None:
    """``title`` above, ``lines`` (wrapped to the figure's width) in a monospace footer."""
    width, height = figure.get_size_inches()
    characters = int(width * 72 / (7 * 0.62))  # 7-point monospace
    footer = "\n".join(wrapped for line in lines for wrapped in textwrap.wrap(line, characters))
    figure.suptitle(title, fontsize=11)
    count = footer.count("\n") + 1
    figure.subplots_adjust(bottom=min(0.5, (0.6 + 0.12 * count) / height),
                           top=1 - 0.6 / height, hspace=0.5, wspace=0.3)
    figure.text(0.01, 0.01, footer, fontsize=7, va="bottom", ha="left", family="monospace")


def save_plot(context, figure: Figure, filename: str, series: dict, published: str,
              extra: dict | None = None) -> str:
    """Add the scale and published-claim footer, write the PNG and ``<stem>.json``.

    ``context``: the entry's ``ReportContext``. ``series``: {name: {"x": [...], "y": [...]}
    (or any JSON-able description)}.
    """
    experiment = context.experiment
    _add_footer(figure, f"{experiment.name}: {experiment.citation}",
                [context.scale_line(), f"Published ({experiment.citation}): {published}"])
    path = write_png(figure, context.path(filename))
    payload = {"name": experiment.name, "scale": context.scale_line(), "published": published,
               "series": series}
    payload.update(extra or {})
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True, default=float)
    return path


def plot_artifact(context, path: str, series: dict, summary: str) -> Artifact:
    return Artifact(path=os.path.relpath(path, context.out_dir), kind="plot", summary=summary,
                    series=sorted(series))
