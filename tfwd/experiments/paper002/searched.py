"""The mnist_paper scale's extra sections of paper 002 table 1: validation beside test
accuracy, the learning-rate search of each regime (one seed per grid point, scored on the
held-out split), the compute, and figure 3's diagnostics at the last epoch."""
from __future__ import annotations

import numpy as np

from tfwd.choices.diagnostics import Diagnostic
from tfwd.experiments.paper002.regimes import run_key
from tfwd.experiments.published import REGIME_LABELS
from tfwd.experiments.reporting import ReportContext, format_stat, markdown_table
from tfwd.experiments.spec import RunKey


def searched_sections(context: ReportContext, rows, regimes) -> list[str]:
    """The sections' paragraphs and tables, one table row per (row, regime)."""
    accuracy, search, compute, diagnostics = [], [], [], []
    for row in rows:
        for regime in regimes:
            key = run_key(row, regime)
            name = f"{row[1]} {REGIME_LABELS[regime]}"
            accuracy.append([name, format_stat(context.final(key, "validation_accuracy"), 2,
                                               100.0),
                             format_stat(context.final(key, "test_accuracy"), 2, 100.0)])
            report = context.search(key)
            if report:
                search.append([name, _trials_text(report), _chosen_text(report),
                               _first_seed_check(context, key, report)])
            compute.append([name] + _compute_cells(context, key, report))
            diagnostics.append([name] + _final_diagnostics(context, key))
    return [
        "Held-out validation (the 5k split that chose the learning rate) and test accuracy "
        "(%) of the seeds:", markdown_table(["regime", "validation", "test"], accuracy),
        "Learning-rate search (seed 0, final-epoch validation accuracy %; base rate at batch "
        "128 → the rate applied). Seed 0 trains the chosen trial's configuration again, with "
        "the test set evaluated: its validation accuracy must equal the trial's (the runs are "
        "deterministic).", markdown_table(["regime", "grid", "chosen η₀",
                                            "seed 0 validation = trial's"], search),
        "Compute (seconds of training and diagnostics, evaluation excluded; grid trials in "
        "all, then each seed):",
        markdown_table(["regime", "grid trials", "seeds", "hours in all"], compute),
        "Figure 3's diagnostics after the last epoch (mean ± sd over seeds): ‖F‖_F / ‖diag "
        "F‖_F of the empirical Fisher, the mean over layers of the per-layer gradient variance, "
        "and λ_max of the Hessian (BN folded, temperature fitted on the test set):",
        markdown_table(["regime", "‖F‖_F/‖diag F‖_F", "gradient variance", "λ_max"],
                       diagnostics)]


def _compute_cells(context: ReportContext, key: RunKey, report: dict | None) -> list[str]:
    """Seconds of the grid trials, of each seed, and hours in all."""
    seconds = [sum(e["wall_time_seconds"] for e in r["epochs"]) for r in context.finished(key)]
    trial_seconds = (sum(t.get("train_seconds", 0.0) for t in report["trials"])
                     if report else 0.0)
    return [f"{trial_seconds:.0f}", " / ".join(f"{x:.0f}" for x in seconds) or "—",
            f"{(trial_seconds + sum(seconds)) / 3600:.2f}"]


def _trials_text(report: dict) -> str:
    """'η₀ (→ applied rate): validation %' per grid point of a search.json."""
    scaling = report["learning_rate_scaling"]
    applied = dict(zip(report["grid"]["learning_rate"], scaling["effective_learning_rates"]))
    return ", ".join(
        f"{t['values']['learning_rate']:g} (→ {applied[t['values']['learning_rate']]:g}): "
        + (f"{100 * t['validation_accuracy']:.2f}" if "validation_accuracy" in t
           else t["status"]) for t in report["trials"])


def _chosen_text(report: dict) -> str:
    """The chosen η₀, and the grid points it tied with (``tfwd.tuning`` keeps the first)."""
    best = report["best"]
    ties = [t["values"]["learning_rate"] for t in report["trials"]
            if t is not best and t.get("validation_accuracy") == best["validation_accuracy"]
            and t["values"] != best["values"]]
    chosen = f"{best['values']['learning_rate']:g}"
    if ties:
        chosen += (f" (tied with {', '.join(f'{v:g}' for v in ties)}; the first in grid order "
                   "is kept)")
    return chosen


def _first_seed_check(context: ReportContext, key: RunKey, report: dict) -> str:
    """Whether the first seed's final validation accuracy repeats the chosen trial's."""
    first = context.results[key.label][0]
    if not first or report["best"] is None:
        return "—"
    trial = report["best"]["validation_accuracy"]
    seed = first["epochs"][-1]["validation_accuracy"]
    return ("yes" if seed == trial else "NO") + f" ({100 * seed:.2f} vs {100 * trial:.2f})"


def _defined(extract):
    """``extract``, or None for a diagnostic value marked undefined."""
    return lambda value: None if "undefined" in value else extract(value)


FINAL_MEASURES = (
    (Diagnostic.FISHER_NORMS, lambda v: v["full"] / v["diagonal"] if v["diagonal"] else None),
    (Diagnostic.GRADIENT_VARIANCE, lambda v: float(np.mean(list(v.values())))),
    (Diagnostic.HESSIAN_EIGENVALUE, lambda v: v["eigenvalue"]),
)


def _final_diagnostics(context: ReportContext, key: RunKey) -> list[str]:
    """Figure 3's three measures at each seed's last measured epoch (undefined ones left
    out, e.g. no temperature calibrates the model): formatted mean ± sd (n)."""
    cells = []
    for name, extract in FINAL_MEASURES:
        value = context.final_diagnostic(key, name, _defined(extract))
        cells.append("—" if value is None else f"{value.mean:.3g} ± {value.std:.2g} "
                     f"(n={value.n})")
    return cells
