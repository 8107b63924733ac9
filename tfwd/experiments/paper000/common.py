"""What several reports of paper 000 share: test accuracies, their formatting, the names of
the published settings and the accuracy-per-epoch panel."""
from __future__ import annotations

from typing import Sequence

from tfwd.experiments.plots import style_axes
from tfwd.experiments.reporting import ReportContext, Stat, format_stat
from tfwd.experiments.spec import RunKey


def accuracy(context: ReportContext, key: RunKey) -> Stat | None:
    """Final test accuracy over seeds."""
    return context.final(key, "test_accuracy")


def percent(value: Stat | None) -> str:
    return format_stat(value, 2, 100.0)


def delta(with_decay: Stat | None, without: Stat | None) -> str:
    """The gain from decay in points, or "—" when either run is missing."""
    if with_decay is None or without is None:
        return "—"
    return f"{100 * (with_decay.mean - without.mean):+.2f}"


def setting_name(key: tuple) -> str:
    """A published setting (``Setup.published_key``) in words."""
    dataset, model, batch_norm, augment = key
    extras = {(False, False): "no BN, no aug", (True, False): "BN, no aug",
              (True, True): "BN + aug", (False, True): "aug, no BN"}[(batch_norm, augment)]
    return f"{dataset} {model}, {extras}"


def accuracy_curves(context: ReportContext, axes, keys_and_names, title: str, series: dict,
                    field: str = "test_accuracy") -> None:
    """One line per run of ``field`` (in %) per epoch; ``series[label]`` gets its points."""
    for key, name in keys_and_names:
        epochs, values = context.curve(key, field)
        values = [100.0 * v for v in values]
        if epochs:
            axes.plot(epochs, values, marker="o", markersize=3, label=name)
        series[key.label] = {"x": epochs, "y": values, "legend": name}
    style_axes(axes, title=title, xlabel="epoch", ylabel=field.replace("_", " ") + " (%)")


def final_accuracies(context: ReportContext, keys: Sequence[RunKey]) -> str:
    return "; ".join(f"{key.label} {percent(accuracy(context, key))}" for key in keys)
