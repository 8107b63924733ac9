"""Paper 000's effective-learning-rate mechanism in BN networks (§4.1): figure 3 (the effective
learning rate η/‖w‖² per epoch) and figure 4 (weight-norm transfer closes the decay gap)."""
from __future__ import annotations

from tfwd.choices.decay import DecayGroup
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.layers import LayerGroup
from tfwd.choices.optimizers import Optimizer
from tfwd.experiments import published
from tfwd.experiments.paper000.common import accuracy, accuracy_curves, final_accuracies
from tfwd.experiments.paper000.runs import (DECAYS, NO_DECAY, PAPER_DECAY, bn_setup,
                                            run_000)
from tfwd.experiments.plots import new_figure, plot_artifact, save_plot, style_axes
from tfwd.experiments.reporting import ReportContext, first_key
from tfwd.experiments.spec import Experiment, Run, RunKey, Scale

# ------------------------------------------------------------------------------ figure 3

FIG3_DECAY_NAMES = {NO_DECAY: "no decay", PAPER_DECAY: "weight decay (L2, authors' SGD)"}


def _fig3_key(decay: str) -> RunKey:
    return RunKey(optimizer=Optimizer.SGD, decay=decay)


def _fig3_runs(scale: Scale) -> list[Run]:
    setup = bn_setup(scale)
    return [run_000(scale, _fig3_key(decay), setup, Optimizer.SGD, decay) for decay in DECAYS]


def _effective_lr_curve(context: ReportContext, key: RunKey):
    """(epochs, η/‖w‖² of the first BN layer, that layer's name or None)."""
    histories = context.diagnostic(key, Diagnostic.EFFECTIVE_LR)
    if not histories or not histories[0]:
        return [], [], None
    layer = first_key(histories[0][min(histories[0])])
    epochs, values = context.diagnostic_curve(key, Diagnostic.EFFECTIVE_LR,
                                              lambda value: value[layer])
    return epochs, values, layer


def _fig3_report(context: ReportContext):
    figure, axes = new_figure(1, 2)
    series, ratios = {}, []
    for decay, name in FIG3_DECAY_NAMES.items():
        key = _fig3_key(decay)
        epochs, values, layer = _effective_lr_curve(context, key)
        if epochs:
            axes[0][0].plot(epochs, values, marker="o", markersize=3, label=f"{name} ({layer})")
            ratios.append(f"{key.label}: η_eff(epoch {epochs[-1]}) / η_eff(epoch {epochs[0]}) "
                          f"= {values[-1] / values[0]:.3g}")
        series[key.label] = {"x": epochs, "y": values, "layer": layer}
        lr_epochs, rates = context.curve(key, "learning_rate")
        axes[0][1].plot(lr_epochs, rates, marker="o", markersize=3, label=name)
    for ax, title in ((axes[0][0], "effective LR η/‖w‖² of the first BN layer"),
                      (axes[0][1], "scheduled learning rate η")):
        style_axes(ax, title=title, xlabel="epoch", log_y=True)
    path = save_plot(context, figure, "p000_fig3.png", series, published.CLAIMS_000["fig3"])
    return plot_artifact(context, path, series, "; ".join(ratios) or "no measurement")


# ------------------------------------------------------------------------------ figure 4

BASELINE = RunKey(name="baseline")
DECAYED = RunKey(name="wd-all (reference)")
NORM_TRANSFER = RunKey(name="wn-conv")
TOP_DECAY_AND_NORM_TRANSFER = RunKey(name="wd-fc + wn-conv")


def _fig4_runs(scale: Scale) -> list[Run]:
    setup = bn_setup(scale)
    # An MLP's BN layers are Dense.
    layers = LayerGroup.CONV if scale.is_paper else LayerGroup.NORMALIZED
    sgd = Optimizer.SGD
    baseline = run_000(scale, BASELINE, setup, sgd, NO_DECAY)
    decayed = run_000(scale, DECAYED, setup, sgd, PAPER_DECAY)
    return [baseline, decayed,
            run_000(scale, NORM_TRANSFER, setup, sgd, NO_DECAY, transfer_from=decayed,
                    transfer_layers=layers),
            run_000(scale, TOP_DECAY_AND_NORM_TRANSFER, setup, sgd, PAPER_DECAY,
                    decay_group=DecayGroup.TOP, transfer_from=decayed, transfer_layers=layers)]


def _fig4_report(context: ReportContext):
    figure, axes = new_figure(1, 1, width=7.0)
    series = {}
    keys = [run.key for run in context.runs]
    accuracy_curves(context, axes[0][0], [(key, key.label) for key in keys], "SGD, BN network",
                    series)
    base, reference = accuracy(context, BASELINE), accuracy(context, DECAYED)
    transferred = accuracy(context, NORM_TRANSFER)
    summary = final_accuracies(context, keys)
    if base and reference and transferred and reference.mean != base.mean:
        closed = (transferred.mean - base.mean) / (reference.mean - base.mean)
        summary += f"; wn-conv closes {100 * closed:.0f}% of the decay gap"
    path = save_plot(context, figure, "p000_fig4.png", series, published.CLAIMS_000["fig4"])
    return plot_artifact(context, path, series, "final test acc.: " + summary)


FIG3 = Experiment(
    "p000_fig3", "000", "Figure 3",
    "Effective learning rate η/‖w‖² of a BN layer per epoch, SGD with and without "
    "decay (§4.1).", _fig3_runs, _fig3_report)
FIG4 = Experiment(
    "p000_fig4", "000", "Figure 4",
    "Weight-norm transfer: a run without decay whose BN layers are rescaled after "
    "every epoch to the decayed run's norms (wn-conv), optionally with decay on the "
    "top layer (wd-fc + wn-conv) (§4.1).", _fig4_runs, _fig4_report)
