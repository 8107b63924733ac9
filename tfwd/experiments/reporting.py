"""What reports are made of: the results of an entry's runs, statistics over seeds, the
scale line and markdown tables (plots: ``tfwd.experiments.plots``).

Every artifact states its scale (``ReportContext.scale_line``) and puts the published numbers
or claims beside the measured ones. Reports look runs up by their ``RunKey``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterable, Sequence

import numpy as np

from tfwd.choices.scales import ScaleName
from tfwd.experiments.spec import Artifact, Experiment, Run, RunKey, Scale


@dataclasses.dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of a quantity over ``n`` seeds."""

    mean: float
    std: float
    n: int

    def format(self, digits: int = 2, scale: float = 1.0) -> str:
        text = f"{self.mean * scale:.{digits}f}"
        if self.n > 1:
            text += f" ± {self.std * scale:.{digits}f} (n={self.n})"
        return text


def stat(values: Iterable[float]) -> Stat | None:
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return Stat(float(np.mean(values)), std, len(values))


def format_stat(value: Stat | None, digits: int = 2, scale: float = 1.0) -> str:
    return "—" if value is None else value.format(digits, scale)


def format_published(value, digits: int = 2) -> str:
    """A published ``(mean, ±)`` pair, a number, or None (not reported)."""
    if value is None:
        return "N/A"
    if isinstance(value, tuple):
        mean, spread = value
        return f"{mean:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")
    return f"{value:.{digits}f}"


@dataclasses.dataclass
class ReportContext:
    """The runs of one entry and their results, handed to the entry's report.

    ``results[run.label]``: one results dict (``tfwd.train`` results.json) per seed of the
    run, None where that seed failed. ``notes``: the runner's remarks (e.g. a skipped search).
    ``searches[run.label]``: for runs with a grid search, per seed ``tfwd.tuning``'s
    search.json dict, None while the search is unfinished. The methods take the run's
    ``RunKey``.
    """

    experiment: Experiment
    scale: Scale
    runs: Sequence[Run]
    results: dict
    out_dir: str
    notes: list = dataclasses.field(default_factory=list)
    searches: dict = dataclasses.field(default_factory=dict)

    def search(self, key: RunKey) -> dict | None:
        """The first finished search of the run ``key``, or None."""
        return next((s for s in self.searches.get(key.label, []) if s is not None), None)

    def run(self, key: RunKey) -> Run:
        for run in self.runs:
            if run.key == key:
                return run
        raise KeyError(f"{self.experiment.name} has no run {key.label!r}.")

    def finished(self, key: RunKey) -> list[dict]:
        return [r for r in self.results.get(key.label, []) if r is not None and r.get("epochs")]

    def final(self, key: RunKey, field: str) -> Stat | None:
        """Statistic over seeds of ``field`` in the last epoch's record."""
        return stat(r["epochs"][-1].get(field) for r in self.finished(key))

    def curve(self, key: RunKey, field: str) -> tuple[list[int], list[float]]:
        """(epochs, mean over seeds of ``field``) over the epochs every seed reached."""
        runs = self.finished(key)
        if not runs:
            return [], []
        length = min(len(r["epochs"]) for r in runs)
        epochs = [runs[0]["epochs"][i]["epoch"] for i in range(length)]
        values = [float(np.mean([r["epochs"][i][field] for r in runs])) for i in range(length)]
        return epochs, values

    def diagnostic(self, key: RunKey, name: str) -> list[dict[int, object]]:
        """Per finished seed, the diagnostic's history {completed epoch: value}."""
        histories = []
        for r in self.finished(key):
            history = r.get("diagnostics", {}).get(name, {})
            histories.append({int(epoch): value for epoch, value in history.items()})
        return histories

    def final_diagnostic(self, key: RunKey, name: str,
                         extract=lambda value: value) -> Stat | None:
        """Statistic over seeds of ``extract(value)`` at each seed's last measured epoch."""
        values = []
        for history in self.diagnostic(key, name):
            if history:
                values.append(extract(history[max(history)]))
        return stat(values)

    def diagnostic_curve(self, key: RunKey, name: str, extract) -> tuple[list[int], list[float]]:
        """(epochs, mean over seeds of ``extract(value)``) for the epochs all seeds measured."""
        histories = [h for h in self.diagnostic(key, name) if h]
        if not histories:
            return [], []
        epochs = sorted(set.intersection(*(set(h) for h in histories)))
        return epochs, [float(np.mean([extract(h[e]) for h in histories])) for e in epochs]

    def scale_line(self) -> str:
        """One sentence stating the scale of the runs behind the artifact."""
        return describe_scale(self.scale, self.runs) + "".join(f" {n}" for n in self.notes)

    def path(self, filename: str) -> str:
        os.makedirs(self.out_dir, exist_ok=True)
        return os.path.join(self.out_dir, filename)


def model_text(config) -> str:
    """``model(kwargs)``, e.g. ``mlp(depth=2,width=256)``."""
    kwargs = ",".join(f"{k}={v}" for k, v in sorted(config.model.kwargs.items()))
    return config.model.name + (f"({kwargs})" if kwargs else "")


def _joined(values) -> str:
    return "/".join(str(v) for v in sorted(set(values), key=lambda v: (str(type(v)), v)))


def describe_scale(scale: Scale, runs: Sequence[Run]) -> str:
    """E.g. ``Scale: smoke — mnist; mlp(depth=2,width=256); 2 epochs; batch 128; 1 seed; ...``."""
    if not runs:
        return f"Scale: {scale.describe()}."
    configs = [run.config for run in runs]
    seed_counts = sorted({len(run.seeds) for run in runs})
    searched = sum(run.search is not None for run in runs)
    parts = [
        _joined(c.data.dataset for c in configs),
        _joined(model_text(c) for c in configs),
        f"{_joined(c.schedule.epochs for c in configs)} epochs",
        f"batch {_joined(c.schedule.batch_size for c in configs)}",
        f"{_joined(seed_counts)} seed(s) per run",
    ]
    if scale.name == ScaleName.MNIST_PAPER:
        parts.append("paper 002's settings on MNIST, the learning rate grid-searched per regime "
                     "on the held-out 5k split (one seed per grid point), every seed trained at "
                     "the chosen rate on the other 55k")
    elif scale.is_paper:
        parts.append(f"{searched} of {len(runs)} runs grid-searched on the held-out 5k split "
                     "then retrained on train+validation, the others use the authors' "
                     "published hyper-parameters" if searched else "fixed hyper-parameters")
    else:
        decays = sorted({c.schedule.lr_decay_every_epochs for c in configs})
        schedule = ("no LR decay" if decays == [0] else
                    "LR ×0.1 every " + "/".join(str(d) for d in decays if d) + " epoch(s)")
        parts.append("real MNIST stand-ins for the papers' datasets and networks, fixed "
                     f"hyper-parameters, no grid search, {schedule}")
    return f"Scale: {scale.describe()} — " + "; ".join(parts) + "."


# ------------------------------------------------------------------------------ writers


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_page(context: ReportContext, filename: str, body: Sequence[str]) -> str:
    """Write ``# title``, the citation and scale, then ``body`` paragraphs; returns the path."""
    experiment = context.experiment
    lines = [f"# {experiment.name}: {experiment.citation}", "", experiment.description, "",
             f"**{context.scale_line()}**", ""]
    lines += [paragraph for block in body for paragraph in (block, "")]
    path = context.path(filename)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def table_artifact(context: ReportContext, path: str, columns: Sequence[str],
                   summary: str) -> Artifact:
    return Artifact(path=os.path.relpath(path, context.out_dir), kind="table", summary=summary,
                    series=list(columns))


def first_key(mapping: dict) -> str:
    """The first layer of a per-layer diagnostic (layers are recorded in model order)."""
    return next(iter(mapping))


def correlation(xs: Sequence[float], ys: Sequence[float], *, log_x: bool = True,
                log_y: bool = True) -> float | None:
    """Pearson correlation on the plotted axes (log where ``log_x``/``log_y``); None below
    3 usable points or for a constant coordinate."""
    pairs = [(x, y) for x, y in zip(xs, ys)
             if x is not None and y is not None and (not log_x or x > 0) and (not log_y or y > 0)]
    if len(pairs) < 3:
        return None
    values = np.asarray(pairs, dtype=float)
    if log_x:
        values[:, 0] = np.log(values[:, 0])
    if log_y:
        values[:, 1] = np.log(values[:, 1])
    if np.std(values[:, 0]) == 0 or np.std(values[:, 1]) == 0:
        return None
    return float(np.corrcoef(values[:, 0], values[:, 1])[0, 1])
