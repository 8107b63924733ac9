"""Paper 002's figure 3 (§4.1-4.2): (a) full vs diagonal Fisher norm over training, (b)
per-layer gradient variance and (c) training error vs iterations at one learning rate for
every regime, (d) the largest Hessian eigenvalue at the end of training."""
from __future__ import annotations

import numpy as np

from tfwd.choices.regimes import RegimeName
from tfwd.choices.data import Dataset
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.models import Architecture
from tfwd.data import dataset_info
from tfwd.experiments import published
from tfwd.experiments.paper002.regimes import SMALL_CIFAR_STAND_IN, run_002, run_key
from tfwd.experiments.plots import new_figure, plot_artifact, save_plot, style_axes
from tfwd.experiments.published import REGIME_LABELS
from tfwd.experiments.reporting import ReportContext, format_stat
from tfwd.experiments.spec import Experiment, Run, RunKey, Scale
from tfwd.train import TrainConfig

FIG3_ROW = (Dataset.CIFAR10, Architecture.RESNET44)
FIG3_REGIMES = (RegimeName.SB, RegimeName.LB, RegimeName.FULL_F, RegimeName.DIAG_F_PLAIN,
                RegimeName.KFAC_PLAIN)
FIG3D_ROWS = (FIG3_ROW, (Dataset.CIFAR100, published.RESNET44_X2),
              (Dataset.CIFAR10, Architecture.VGG16), (Dataset.CIFAR100, Architecture.VGG16))
FIG3D_REGIMES = (RegimeName.SB, RegimeName.LB_GBN, RegimeName.DIAG_F)
FIG3_FISHER_REGIME = RegimeName.SB
PANEL_ABC = "abc"  # the runs of panels (a)-(c), apart from the table runs of (d)


def _fig3_rows(scale: Scale) -> tuple[tuple, tuple]:
    if scale.is_paper:
        return FIG3_ROW, FIG3D_ROWS
    return SMALL_CIFAR_STAND_IN[0], SMALL_CIFAR_STAND_IN


def _abc_key(row: tuple, regime: str) -> RunKey:
    return run_key(row, regime, panel=PANEL_ABC)


def _fig3_runs(scale: Scale) -> list[Run]:
    row, rows_d = _fig3_rows(scale)
    runs = []
    for regime in FIG3_REGIMES:
        diagnostics = ((Diagnostic.FISHER_NORMS, Diagnostic.GRADIENT_VARIANCE)
                       if regime == FIG3_FISHER_REGIME else (Diagnostic.GRADIENT_VARIANCE,))
        runs.append(run_002(scale, row, regime, diagnostics=diagnostics, panel=PANEL_ABC))
    runs += [run_002(scale, r, regime) for r in rows_d for regime in FIG3D_REGIMES]
    return runs


def _steps_per_epoch(config: TrainConfig) -> int:
    split_size = dataset_info(config.data.dataset).split_sizes[config.data.train_split]
    return split_size // config.schedule.batch_size


def _panel_a(context: ReportContext, axes, row: tuple, series: dict, summary: list) -> None:
    """Frobenius norms of the full and diagonal empirical Fisher over training."""
    key = _abc_key(row, FIG3_FISHER_REGIME)
    for field, name in (("full", "full Fisher ‖F‖_F"), ("diagonal", "diagonal ‖diag F‖_F")):
        epochs, values = context.diagnostic_curve(key, Diagnostic.FISHER_NORMS,
                                                  lambda v, k=field: v[k])
        axes.plot(epochs, values, marker="o", markersize=3, label=name)
        series[f"a/{field}"] = {"x": epochs, "y": values}
    full, diagonal = series["a/full"]["y"], series["a/diagonal"]["y"]
    if full and diagonal:
        summary.append(f"(a) ‖F‖_F/‖diag F‖_F = {full[-1] / diagonal[-1]:.3g} at the end")
    style_axes(axes, title=f"(a) Fisher norms, {REGIME_LABELS[FIG3_FISHER_REGIME]} run",
               xlabel="epoch", log_y=True)


def _panel_b(context: ReportContext, axes, key: RunKey, regime: str, series: dict) -> None:
    """One regime's per-layer gradient variance at the last epoch every seed measured."""
    histories = [h for h in context.diagnostic(key, Diagnostic.GRADIENT_VARIANCE) if h]
    if not histories:
        series[f"b/{regime}"] = {"x": [], "y": []}
        return
    last = min(max(h) for h in histories)
    layers = list(histories[0][last])
    values = [float(np.mean([h[last][layer] for h in histories])) for layer in layers]
    axes.plot(range(len(layers)), values, marker="o", markersize=4, label=REGIME_LABELS[regime])
    axes.set_xticks(range(len(layers)), layers, rotation=45, fontsize=6)
    series[f"b/{regime}"] = {"x": layers, "y": values, "epoch": last}


def _panel_c(context: ReportContext, axes, key: RunKey, regime: str, series: dict) -> None:
    """One regime's training error against iterations."""
    epochs, accuracy = context.curve(key, "train_accuracy")
    steps = _steps_per_epoch(context.run(key).config) if epochs else 0
    iterations = [epoch * steps for epoch in epochs]
    error = [100.0 * (1.0 - a) for a in accuracy]
    axes.plot(iterations, error, marker="o", markersize=3, label=REGIME_LABELS[regime])
    series[f"c/{regime}"] = {"x": iterations, "y": error}


def _panel_d(context: ReportContext, axes, rows_d, series: dict, summary: list) -> None:
    """The largest Hessian eigenvalue at the end of training (BN folded, temperature
    fitted), one bar per (row, regime)."""
    width = 0.8 / len(FIG3D_REGIMES)
    eigen_summary = []
    for index, regime in enumerate(FIG3D_REGIMES):
        means, spreads = [], []
        for r in rows_d:
            value = context.final_diagnostic(run_key(r, regime),
                                             Diagnostic.HESSIAN_EIGENVALUE,
                                             lambda v: v["eigenvalue"])
            means.append(np.nan if value is None else value.mean)
            spreads.append(0.0 if value is None else value.std)
            eigen_summary.append(f"{r[1]} {REGIME_LABELS[regime]} {format_stat(value, 3)}")
        positions = np.arange(len(rows_d)) + index * width
        axes.bar(positions, means, width, yerr=spreads, label=REGIME_LABELS[regime])
        series[f"d/{regime}"] = {"x": ["/".join(r) for r in rows_d], "y": means,
                                 "std": spreads}
    axes.set_xticks(np.arange(len(rows_d)) + width, ["/".join(r) for r in rows_d], fontsize=7)
    style_axes(axes, title="(d) largest Hessian eigenvalue at the end")
    summary.append("(d) λ_max: " + ", ".join(eigen_summary))


def _fig3_report(context: ReportContext):
    row, rows_d = _fig3_rows(context.scale)
    figure, axes = new_figure(2, 2)
    series, summary = {}, []
    _panel_a(context, axes[0][0], row, series, summary)
    for regime in FIG3_REGIMES:
        key = _abc_key(row, regime)
        _panel_b(context, axes[0][1], key, regime, series)
        _panel_c(context, axes[1][0], key, regime, series)
    style_axes(axes[0][1], title="(b) marginal gradient variance per layer", log_y=True)
    style_axes(axes[1][0], title="(c) training error vs iterations (same LR for all)",
               xlabel="iterations", ylabel="train error (%)")
    _panel_d(context, axes[1][1], rows_d, series, summary)
    path = save_plot(context, figure, "p002_fig3.png", series, published.CLAIMS_002["fig3"])
    return plot_artifact(context, path, series, "; ".join(summary))


FIG3 = Experiment(
    "p002_fig3", "002", "Figure 3 (a-d)",
    "(a) full vs diagonal Fisher norm over training; (b) per-layer gradient variance "
    "and (c) training error vs iterations for SB, LB, LB+full F, LB+diag F (and "
    "LB+K-FAC noise) at one learning rate; (d) largest Hessian eigenvalue at the end "
    "for SB, LB+GBN, LB+diag F (§4.1-4.2).", _fig3_runs, _fig3_report)
