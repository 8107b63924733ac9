"""Paper 000's K-FAC mechanism in BN networks (§4.3), figure 7: the Fisher and Gauss-Newton
norms of the first layer's normalized weights and the effective damping λ‖w‖² per epoch."""
from __future__ import annotations

from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.optimizers import Optimizer
from tfwd.experiments import published, settings
from tfwd.experiments.paper000.runs import DECAYS, bn_setup, run_000
from tfwd.experiments.plots import new_figure, plot_artifact, save_plot, style_axes
from tfwd.experiments.reporting import ReportContext, first_key
from tfwd.experiments.spec import Experiment, Run, RunKey, Scale

FIG7_OPTIMIZERS = (Optimizer.KFAC_F, Optimizer.KFAC_G)
CURVATURE_NORMS = (("fisher_norm", "-", "F"), ("gauss_newton_norm", "--", "G"))


def _fig7_runs(scale: Scale) -> list[Run]:
    setup = bn_setup(scale)
    return [run_000(scale, RunKey(optimizer=optimizer, decay=decay), setup, optimizer, decay)
            for optimizer in settings.optimizers_for(scale, FIG7_OPTIMIZERS)
            for decay in DECAYS]


def _run_curves(context: ReportContext, axes, run: Run, changes: list) -> dict:
    """Plot one run's curvature norms (left) and effective damping (right); its series."""
    histories = context.diagnostic(run.key, Diagnostic.EFFECTIVE_DAMPING)
    if not histories or not histories[0]:
        return {}
    layer = first_key(histories[0][min(histories[0])])
    curves = {}
    for field, style, symbol in CURVATURE_NORMS:
        epochs, values = context.diagnostic_curve(
            run.key, Diagnostic.EFFECTIVE_DAMPING, lambda value, k=field: value[layer][k])
        axes[0][0].plot(epochs, values, linestyle=style, marker="o", markersize=3,
                        label=f"{run.label}: ‖{symbol}_ŵ‖")
        curves[field] = {"x": epochs, "y": values}
        changes.append(f"{run.label} ‖{symbol}‖ ×{values[-1] / values[0]:.3g}")
    epochs, damping = context.diagnostic_curve(
        run.key, Diagnostic.EFFECTIVE_DAMPING, lambda value: value[layer]["effective_damping"])
    axes[0][1].plot(epochs, damping, marker="o", markersize=3, label=run.label)
    curves["effective_damping"] = {"x": epochs, "y": damping}
    return dict(curves, layer=layer)


def _fig7_report(context: ReportContext):
    figure, axes = new_figure(1, 2)
    series, changes = {}, []
    for run in context.runs:
        series[run.label] = _run_curves(context, axes, run, changes)
    for ax, title in ((axes[0][0], "curvature norms of the first layer's normalized weights"),
                      (axes[0][1], "effective damping λ‖w‖²")):
        style_axes(ax, title=title, xlabel="epoch", log_y=True, legend_size=6)
    path = save_plot(context, figure, "p000_fig7.png", series, published.CLAIMS_000["fig7"])
    summary = ("change from first to last measured epoch: " + "; ".join(changes)
               if changes else "no measurement")
    return plot_artifact(context, path, series, summary)


FIG7 = Experiment(
    "p000_fig7", "000", "Figure 7",
    "Norms of the Fisher and Gauss-Newton blocks of the first layer's normalized "
    "weights, and the effective damping λ‖w‖², per epoch (§4.3).", _fig7_runs, _fig7_report)
