"""The reproduction layer: one registry entry per table and figure of the two seed papers.

    from tfwd.experiments import Scale, get, run_experiments
    get("p000_table2").runs(Scale("paper"))               # the paper's TrainConfigs
    run_experiments("all", Scale("smoke"), "runs/smoke")  # train, report, write index.md

Modules, top to bottom: ``spec`` (Scale, RunKey, Run, Experiment, run identity),
``settings`` (the papers' schedules and hyper-parameters, and the small-scale stand-ins; the
search grids are ``tfwd.tuning.grid``'s), ``published`` (the papers' numbers and claims),
``reporting`` (statistics over seeds, tables), ``plots`` (Agg figures and their one axis
styling), the packages ``paper000`` and ``paper002`` (the entries, one module per family),
``registry`` and ``runner``. Shell: ``python -m tfwd.launch.experiment``.
"""
from tfwd.experiments.registry import EXPERIMENTS, get, names, select
from tfwd.experiments.runner import plan_runs, run_experiment, run_experiments, write_index
from tfwd.experiments.spec import (SCALES, Artifact, Experiment, Run, RunKey, Scale,
                                   config_hash)

__all__ = [
    "EXPERIMENTS", "SCALES", "Artifact", "Experiment", "Run", "RunKey", "Scale", "config_hash",
    "get", "names", "plan_runs", "run_experiment", "run_experiments", "select", "write_index",
]
