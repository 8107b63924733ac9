"""Paper 000's accuracy comparisons: table 1 (with vs without decay), figure 1 (decay vs L2
vs none per epoch), figures 2 and 6 (decay on some layer groups only, §4.1 and §4.3)."""
from __future__ import annotations

from tfwd.choices.data import Dataset
from tfwd.choices.decay import DecayGroup, DecayType
from tfwd.choices.models import Architecture
from tfwd.choices.optimizers import DISPLAY_NAMES, Optimizer
from tfwd.experiments import published, settings
from tfwd.experiments.paper000.common import (accuracy, accuracy_curves, delta,
                                              final_accuracies, percent, setting_name)
from tfwd.experiments.paper000.runs import (DECAYS, NO_DECAY, PAPER_DECAY, VGG16_BN_AUG,
                                            paper_setup, run_000, run_key, scaled_setups)
from tfwd.experiments.plots import new_figure, plot_artifact, save_plot
from tfwd.experiments.reporting import (ReportContext, markdown_table, table_artifact,
                                        write_page)
from tfwd.experiments.spec import Experiment, Run, Scale

# ------------------------------------------------------------------------------ table 1

TABLE1_SETUPS = tuple(paper_setup(*key) for key in published.TABLE1_000)
TABLE1_HEADER = ["measured setting", "optimizer", "test acc. without decay (%)",
                 "with decay (%)", "Δ", "published setting", "published without",
                 "published with", "published Δ"]


def _table1_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, run_key(setup, optimizer, decay), setup, optimizer, decay)
            for setup, _ in scaled_setups(scale, TABLE1_SETUPS)
            for optimizer in settings.optimizers_for(scale, published.OPTIMIZERS_000)
            for decay in DECAYS]


def _table1_row(context: ReportContext, setup, stands_for, optimizer: str) -> tuple[list, str]:
    """(table row, "Optimizer Δ") of one optimizer; "—" where the scale trains fewer."""
    without = accuracy(context, run_key(setup, optimizer, NO_DECAY))
    with_decay = accuracy(context, run_key(setup, optimizer, PAPER_DECAY))
    paper_without, paper_with = published.TABLE1_000[stands_for.published_key][optimizer]
    row = [setup.label, DISPLAY_NAMES[optimizer], percent(without), percent(with_decay),
           delta(with_decay, without), setting_name(stands_for.published_key),
           f"{paper_without:.2f}", f"{paper_with:.2f}", f"{paper_with - paper_without:+.2f}"]
    return row, f"{DISPLAY_NAMES[optimizer]} {delta(with_decay, without)}"


def _table1_report(context: ReportContext):
    rows, deltas = [], []
    for setup, stands_for in scaled_setups(context.scale, TABLE1_SETUPS):
        gains = []
        for optimizer in published.OPTIMIZERS_000:
            row, gain = _table1_row(context, setup, stands_for, optimizer)
            rows.append(row)
            gains.append(gain)
        deltas.append(f"{setup.label}: " + ", ".join(gains))
    path = write_page(context, "p000_table1.md", [
        "Decay: L2 through momentum for SGD (the authors' code), decoupled for Adam and "
        "K-FAC. Published numbers: paper 000 table 1 (test accuracy, %).",
        markdown_table(TABLE1_HEADER, rows)])
    summary = "test-accuracy gain from decay (points): " + "; ".join(deltas)
    return table_artifact(context, path, TABLE1_HEADER, summary)


# ------------------------------------------------------------------------------ figure 1

FIG1_SETUPS = (VGG16_BN_AUG, paper_setup(Dataset.CIFAR100, Architecture.RESNET32, True, True))
FIG1_DECAYS = ((NO_DECAY, "none"), (DecayType.L2, "L2"), (DecayType.DECOUPLED, "weight decay"))


def _fig1_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, run_key(setup, optimizer, decay), setup, optimizer, decay)
            for setup, _ in scaled_setups(scale, FIG1_SETUPS)
            for optimizer in settings.optimizers_for(scale, published.OPTIMIZERS_000)
            for decay, _ in FIG1_DECAYS]


def _published_none_and_wd(stands_for) -> str:
    reference = published.TABLE1_000[stands_for.published_key]
    return f"{setting_name(stands_for.published_key)} none/wd: " + ", ".join(
        f"{DISPLAY_NAMES[o]} {reference[o][0]:.2f}/{reference[o][1]:.2f}"
        for o in published.OPTIMIZERS_000)


def _fig1_report(context: ReportContext):
    setups = scaled_setups(context.scale, FIG1_SETUPS)
    optimizers = settings.optimizers_for(context.scale, published.OPTIMIZERS_000)
    figure, axes = new_figure(len(setups), len(optimizers), width=4.2)
    series, finals = {}, []
    published_text = [published.CLAIMS_000["fig1"]]
    for row, (setup, stands_for) in enumerate(setups):
        published_text.append(_published_none_and_wd(stands_for))
        for column, optimizer in enumerate(optimizers):
            keys = [(run_key(setup, optimizer, decay), name) for decay, name in FIG1_DECAYS]
            accuracy_curves(context, axes[row][column], keys,
                            f"{setup.label}: {DISPLAY_NAMES[optimizer]}", series)
            finals.append(final_accuracies(context, [key for key, _ in keys]))
    path = save_plot(context, figure, "p000_fig1.png", series, " ".join(published_text))
    return plot_artifact(context, path, series, "final test acc.: " + "; ".join(finals))


# ------------------------------------------------------------------------------ figures 2, 6

DECAY_VARIANTS = (NO_DECAY, DecayGroup.TOP, DecayGroup.REST, DecayGroup.ALL)
DECAY_VARIANT_NAMES = {NO_DECAY: "baseline (none)", DecayGroup.TOP: "wd-fc (top only)",
                       DecayGroup.REST: "wd-conv (all but top)", DecayGroup.ALL: "wd-all"}
FIG2_OPTIMIZERS = (Optimizer.SGD, Optimizer.ADAM)
FIG6_OPTIMIZERS = (Optimizer.KFAC_G, Optimizer.KFAC_F)
DECAY_GROUP_SETUPS = (VGG16_BN_AUG,)


def _decay_group_runs(scale: Scale, optimizers) -> list[Run]:
    """Decay on no layer, or the paper's decay on one group of layers (``decay_group``)."""
    runs = []
    for setup, _ in scaled_setups(scale, DECAY_GROUP_SETUPS):
        for optimizer in settings.optimizers_for(scale, optimizers):
            for variant in DECAY_VARIANTS:
                key = run_key(setup, optimizer, variant)
                if variant == NO_DECAY:
                    runs.append(run_000(scale, key, setup, optimizer, NO_DECAY))
                else:
                    runs.append(run_000(scale, key, setup, optimizer, PAPER_DECAY,
                                        decay_group=variant))
    return runs


def _published_none_and_all(stands_for, optimizer: str) -> str:
    reference = published.TABLE1_000[stands_for.published_key][optimizer]
    return (f"table 1, {setting_name(stands_for.published_key)}, "
            f"{DISPLAY_NAMES[optimizer]}: none {reference[0]:.2f}, all {reference[1]:.2f}.")


def _decay_group_report(context: ReportContext, optimizers, filename: str, claim: str):
    scaled = scaled_setups(context.scale, DECAY_GROUP_SETUPS)
    optimizers = settings.optimizers_for(context.scale, optimizers)
    figure, axes = new_figure(len(scaled), len(optimizers))
    series, finals, published_text = {}, [], [claim]
    for row, (setup, stands_for) in enumerate(scaled):
        for column, optimizer in enumerate(optimizers):
            keys = [(run_key(setup, optimizer, v), DECAY_VARIANT_NAMES[v])
                    for v in DECAY_VARIANTS]
            accuracy_curves(context, axes[row][column], keys,
                            f"{setup.label}: {DISPLAY_NAMES[optimizer]}", series)
            finals.append(final_accuracies(context, [key for key, _ in keys]))
            published_text.append(_published_none_and_all(stands_for, optimizer))
    path = save_plot(context, figure, filename, series, " ".join(published_text))
    return plot_artifact(context, path, series, "final test acc.: " + "; ".join(finals))


def _fig2_runs(scale: Scale) -> list[Run]:
    return _decay_group_runs(scale, FIG2_OPTIMIZERS)


def _fig2_report(context: ReportContext):
    return _decay_group_report(context, FIG2_OPTIMIZERS, "p000_fig2.png",
                               published.CLAIMS_000["fig2"])


def _fig6_runs(scale: Scale) -> list[Run]:
    return _decay_group_runs(scale, FIG6_OPTIMIZERS)


def _fig6_report(context: ReportContext):
    return _decay_group_report(context, FIG6_OPTIMIZERS, "p000_fig6.png",
                               published.CLAIMS_000["fig6"])


TABLE1 = Experiment(
    "p000_table1", "000", "Table 1",
    "Test accuracy with and without weight decay for SGD, Adam, KFAC-F and KFAC-G "
    "(CIFAR-10/100, VGG16 and ResNet32, with/without BN and augmentation).",
    _table1_runs, _table1_report)
FIG1 = Experiment(
    "p000_fig1", "000", "Figure 1",
    "Test accuracy per epoch: weight decay vs L2 vs no regularization, for each "
    "optimizer (BN + augmentation).", _fig1_runs, _fig1_report)
FIG2 = Experiment(
    "p000_fig2", "000", "Figure 2",
    "SGD and Adam with decay on no layer / the top layer / all but the top layer / "
    "all layers of a BN network (effective-learning-rate mechanism, §4.1).",
    _fig2_runs, _fig2_report)
FIG6 = Experiment(
    "p000_fig6", "000", "Figure 6",
    "KFAC-G and KFAC-F with decay on no layer / top / all but top / all layers of a "
    "BN network (§4.3).", _fig6_runs, _fig6_report)
