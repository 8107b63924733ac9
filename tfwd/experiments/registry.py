"""The registry: every reproduced table and figure of the two seed papers, by name.

    experiment = tfwd.experiments.get("p000_table1")
    runs = experiment.runs(Scale("smoke"))        # the TrainConfigs it trains

Names are ``p<paper>_<result>``: paper 000 (weight decay) ``p000_table1`` … ``p000_fig8_9``,
paper 002 (curvature noise) ``p002_fig1_2`` … ``p002_table3``.
"""
from __future__ import annotations

from tfwd.experiments import paper000, paper002
from tfwd.experiments.spec import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in paper000.EXPERIMENTS + paper002.EXPERIMENTS
}


def names() -> list[str]:
    """Registry names in the papers' order."""
    return list(EXPERIMENTS)


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}; choose 'all' or one of {names()}.")
    return EXPERIMENTS[name]


def select(selection: str) -> list[Experiment]:
    """``"all"`` or comma-separated names -> the experiments, in registry order."""
    if selection.strip() == "all":
        return list(EXPERIMENTS.values())
    wanted = [name.strip() for name in selection.split(",") if name.strip()]
    if not wanted:
        raise ValueError(f"No experiment named in {selection!r}; choose 'all' or of {names()}.")
    chosen = {get(name).name for name in wanted}
    return [experiment for name, experiment in EXPERIMENTS.items() if name in chosen]
