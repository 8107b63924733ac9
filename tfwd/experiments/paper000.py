"""Entries of paper 000, "Three Mechanisms of Weight Decay Regularization" (Zhang, Wang, Xu,
Grosse; ICLR 2019): tables 1-3 and figures 1-9 (docs/equations.md §2, §4, §7, §9).

``run_000`` builds every run of these entries, so that two entries asking for the same training
get the same configuration (and the runner trains it once): e.g. table 1's SGD runs with and
without decay are also figure 3's effective-learning-rate runs and figure 4's reference.

Decay names used in run labels: ``none``; ``wd`` = the paper's decay (L2 through momentum for
SGD as in the authors' code, decoupled for Adam and K-FAC, docs/equations.md §2); ``l2``;
``decoupled``; ``top``/``rest``/``all`` = the paper's decay on that layer group (figs. 2, 6).
"""
from __future__ import annotations

import dataclasses
import itertools

from tfwd.experiments import published, settings
from tfwd.experiments.published import OPTIMIZER_NAMES
from tfwd.experiments.reporting import (ReportContext, correlation, first_key, format_stat,
                                        markdown_table, new_figure, plot_artifact, save_plot,
                                        table_artifact, write_page)
from tfwd.experiments.settings import is_kfac
from tfwd.experiments.spec import REFERENCE_PREFIX, Experiment, Run, Scale
from tfwd.train import TrainConfig

BN_DIAGNOSTICS = ("effective_lr", "weight_norms")
KFAC_BN_DIAGNOSTICS = BN_DIAGNOSTICS + ("effective_damping",)
JACOBIAN_DIAGNOSTICS = ("jacobian_norm", "kfac_gauss_newton_norm", "generalization_gap")
DECAY_VARIANTS = ("none", "top", "rest", "all")


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Data, network, batch norm and augmentation of a row of the paper's tables."""

    dataset: str
    model: str
    batch_norm: bool
    augment: bool
    model_kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        kwargs = ",".join(f"{k}={v}" for k, v in sorted(self.model_kwargs.items()))
        extras = "+".join(name for name, on in (("bn", self.batch_norm), ("aug", self.augment))
                          if on) or "plain"
        return f"{self.dataset}/{self.model}{f'({kwargs})' if kwargs else ''}/{extras}"

    @property
    def published_key(self) -> tuple:
        return (self.dataset, self.model, self.batch_norm, self.augment)


def paper_setup(dataset: str, model: str, batch_norm: bool, augment: bool) -> Setup:
    return Setup(dataset, model, batch_norm, augment,
                 dict(settings.PAPER_MODEL_KWARGS.get(model, {})))


VGG16_PLAIN = paper_setup("cifar10", "vgg16", False, False)
VGG16_BN_AUG = paper_setup("cifar10", "vgg16", True, True)
RESNET32_PLAIN = paper_setup("cifar10", "resnet32", False, False)
RESNET32_BN_AUG = paper_setup("cifar10", "resnet32", True, True)


def small_setup(scale: Scale, batch_norm: bool, depth: int | None = None) -> Setup:
    """The MNIST MLP standing in for a paper setup at the smoke/tiny scales."""
    kwargs = dict(settings.small_sizes(scale).mlp)
    if depth is not None:
        kwargs["depth"] = depth
    return Setup("mnist", "mlp", batch_norm, False, kwargs)


def scaled_setups(scale: Scale, paper_setups) -> list[tuple[Setup, Setup]]:
    """[(setup to train, paper setup it stands for)]: the paper's at paper scale, else one
    MNIST MLP per batch-norm setting, standing for the first paper setup of that setting —
    with augmentation when BN is on (the papers' headline BN + augmentation rows)."""
    if scale.is_paper:
        return [(setup, setup) for setup in paper_setups]
    chosen = {}
    for setup in paper_setups:
        current = chosen.get(setup.batch_norm)
        if current is None or (setup.batch_norm and setup.augment and not current[1].augment):
            chosen[setup.batch_norm] = (small_setup(scale, setup.batch_norm), setup)
    return [chosen[bn] for bn in sorted(chosen)]


def family_diagnostics(optimizer: str, batch_norm: bool) -> tuple:
    """What every run records by default: the effective LR and weight norms (figs. 3-4),
    plus the effective damping for K-FAC (fig. 7), in BN networks; the Jacobian, K-FAC GN
    norm and generalization gap (fig. 5, table 2) without BN."""
    if batch_norm:
        return KFAC_BN_DIAGNOSTICS if is_kfac(optimizer) else BN_DIAGNOSTICS
    return JACOBIAN_DIAGNOSTICS


def _decay_type(optimizer: str, decay: str) -> str | None:
    if decay == "none":
        return None
    if decay == "wd":
        return settings.paper_decay_type(optimizer)
    if decay in ("l2", "decoupled"):
        return decay
    raise ValueError(f"decay {decay!r} is not one of none, wd, l2, decoupled.")


def _middle(values: tuple) -> float:
    return values[len(values) // 2]


def run_000(scale: Scale, label: str, setup: Setup, optimizer: str, decay: str = "wd", *,
            decay_group: str = "all", batch_size: int | None = None,
            diagnostics: tuple | None = None, constant_lr: bool = False,
            transfer_from: Run | None = None, transfer_layers: str = "conv") -> Run:
    """One run of paper 000 at ``scale`` (module docstring for ``decay``).

    Paper scale: appendix A's schedule for the optimizer and batch; the authors' learning
    rate and γ where docs/equations.md §9 lists them for this (data, model, optimizer, BN,
    augmentation, decay form) at batch 128, otherwise ``settings.search_grid`` with
    retraining on train + validation. ``batch_size`` other than 128 rescales the searched
    rates by √(B/128). Small scales: ``settings.SMALL_HYPERPARAMETERS``, no LR decay.
    ``transfer_from``: the decayed run whose weight norms this run copies after every epoch
    (fig. 4); it takes that run's learning rate (and γ, for decay on the top layer).
    """
    decay_type = _decay_type(optimizer, decay)
    fields = dict(
        dataset=setup.dataset, model=setup.model, model_kwargs=dict(setup.model_kwargs),
        batch_norm=setup.batch_norm, augment=setup.augment, optimizer=optimizer,
        decay_type=decay_type or "decoupled", decay_group=decay_group if decay_type else "all",
        diagnostics=list(family_diagnostics(optimizer, setup.batch_norm)
                         if diagnostics is None else diagnostics),
        momentum=settings.SGD_MOMENTUM, verbose=0,
    )
    if is_kfac(optimizer):
        fields.update(settings.KFAC_SETTINGS, kl_clip=settings.kl_clip_000(optimizer,
                                                                           setup.batch_norm))
    search = None
    if scale.is_paper:
        batch = batch_size or settings.BATCH_SIZE_000
        fields.update(settings.schedule_000(optimizer, batch), batch_size=batch,
                      train_split=settings.PAPER_TRAIN_SPLIT, evaluate_test=True)
        base_batch = settings.BATCH_SIZE_000
        if is_kfac(optimizer):
            fields["kfac_init_batches"] = settings.one_pass_batches(
                setup.dataset, settings.PAPER_TRAIN_SPLIT, batch)
        authors = settings.authors_setting(setup.dataset, setup.model, optimizer,
                                           setup.batch_norm, setup.augment)
        if authors is not None and authors.decay_type == decay_type and batch == base_batch:
            fields.update(learning_rate=authors.learning_rate, weight_decay=authors.weight_decay)
        elif transfer_from is None:
            # The searched fields' values in the config are only the search's starting point.
            search = settings.search_grid(optimizer, decay_type)
            fields["learning_rate"] = (authors.learning_rate if authors
                                       else _middle(search["learning_rate"]))
            if decay_type:
                fields["weight_decay"] = (
                    authors.weight_decay if authors and authors.decay_type == decay_type
                    else _middle(search["weight_decay"]))
    else:
        sizes = settings.small_sizes(scale)
        batch = batch_size or sizes.batch_size
        base_batch = sizes.batch_size
        hyper = settings.SMALL_HYPERPARAMETERS[optimizer]
        fields.update(epochs=settings.small_epochs(scale), batch_size=batch,
                      learning_rate=hyper["learning_rate"], train_split="train",
                      evaluate_test=True)
        if decay_type:
            fields["weight_decay"] = hyper[decay_type]
        if is_kfac(optimizer):
            fields["kfac_init_batches"] = sizes.kfac_init_batches
    if batch != base_batch:
        fields.update(lr_scaling="sqrt", base_batch_size=base_batch)
    if constant_lr:
        fields["lr_decay_every_epochs"] = 0
    reference = None
    if transfer_from is not None:
        reference = transfer_from.label
        fields.update(learning_rate=transfer_from.config.learning_rate,
                      weight_norm_reference=REFERENCE_PREFIX + reference,
                      weight_norm_layers=transfer_layers)
        if decay_type:
            fields["weight_decay"] = transfer_from.config.weight_decay
    return Run(label, TrainConfig(**fields), seeds=settings.seeds(scale), search=search,
               reference=reference)


# ------------------------------------------------------------------------------ helpers


def _accuracy(context: ReportContext, label: str):
    return context.final(label, "test_accuracy")


def _percent(value) -> str:
    return format_stat(value, 2, 100.0)


def _delta(with_decay, without) -> str:
    if with_decay is None or without is None:
        return "—"
    return f"{100 * (with_decay.mean - without.mean):+.2f}"


def _setting_name(key: tuple) -> str:
    dataset, model, batch_norm, augment = key
    extras = {(False, False): "no BN, no aug", (True, False): "BN, no aug",
              (True, True): "BN + aug", (False, True): "aug, no BN"}[(batch_norm, augment)]
    return f"{dataset} {model}, {extras}"


def _accuracy_curves(context: ReportContext, axes, labels_and_names, title: str,
                     series: dict, key: str = "test_accuracy", percent: bool = True,
                     log_y: bool = False):
    for label, name in labels_and_names:
        epochs, values = context.curve(label, key)
        if percent:
            values = [100.0 * v for v in values]
        if epochs:
            axes.plot(epochs, values, marker="o", markersize=3, label=name)
        series[label] = {"x": epochs, "y": values, "legend": name}
    axes.set_title(title, fontsize=9)
    axes.set_xlabel("epoch")
    axes.set_ylabel(key.replace("_", " ") + (" (%)" if percent else ""))
    if log_y:
        axes.set_yscale("log")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)


def _final_accuracies(context: ReportContext, labels) -> str:
    return "; ".join(f"{label} {_percent(_accuracy(context, label))}" for label in labels)


# ------------------------------------------------------------------------------ table 1

TABLE1_SETUPS = tuple(paper_setup(*key) for key in published.TABLE1_000)


def _table1_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, f"{setup.label}/{optimizer}/{decay}", setup, optimizer, decay)
            for setup, _ in scaled_setups(scale, TABLE1_SETUPS)
            for optimizer in settings.optimizers_for(scale, published.OPTIMIZERS_000)
            for decay in ("none", "wd")]


def _table1_report(context: ReportContext):
    rows, deltas = [], []
    for setup, stands_for in scaled_setups(context.scale, TABLE1_SETUPS):
        gains = []
        reference = published.TABLE1_000[stands_for.published_key]
        for optimizer in published.OPTIMIZERS_000:  # "—" where the scale trains fewer
            without = _accuracy(context, f"{setup.label}/{optimizer}/none")
            with_decay = _accuracy(context, f"{setup.label}/{optimizer}/wd")
            paper_without, paper_with = reference[optimizer]
            gains.append(f"{OPTIMIZER_NAMES[optimizer]} {_delta(with_decay, without)}")
            rows.append([setup.label, OPTIMIZER_NAMES[optimizer], _percent(without),
                         _percent(with_decay), _delta(with_decay, without),
                         _setting_name(stands_for.published_key),
                         f"{paper_without:.2f}", f"{paper_with:.2f}",
                         f"{paper_with - paper_without:+.2f}"])
        deltas.append(f"{setup.label}: " + ", ".join(gains))
    header = ["measured setting", "optimizer", "test acc. without decay (%)",
              "with decay (%)", "Δ", "published setting", "published without",
              "published with", "published Δ"]
    path = write_page(context, "p000_table1.md", [
        "Decay: L2 through momentum for SGD (the authors' code), decoupled for Adam and "
        "K-FAC. Published numbers: paper 000 table 1 (test accuracy, %).",
        markdown_table(header, rows)])
    summary = "test-accuracy gain from decay (points): " + "; ".join(deltas)
    return table_artifact(context, path, header, summary)


# ------------------------------------------------------------------------------ figure 1

FIG1_SETUPS = (VGG16_BN_AUG, paper_setup("cifar100", "resnet32", True, True))
FIG1_DECAYS = (("none", "none"), ("l2", "L2"), ("decoupled", "weight decay"))


def _fig1_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, f"{setup.label}/{optimizer}/{decay}", setup, optimizer, decay)
            for setup, _ in scaled_setups(scale, FIG1_SETUPS)
            for optimizer in settings.optimizers_for(scale, published.OPTIMIZERS_000)
            for decay, _ in FIG1_DECAYS]


def _fig1_report(context: ReportContext):
    setups = scaled_setups(context.scale, FIG1_SETUPS)
    optimizers = settings.optimizers_for(context.scale, published.OPTIMIZERS_000)
    figure, axes = new_figure(len(setups), len(optimizers), width=4.2)
    series, finals = {}, []
    published_text = [published.CLAIMS_000["fig1"]]
    for row, (setup, stands_for) in enumerate(setups):
        reference = published.TABLE1_000[stands_for.published_key]
        published_text.append(
            f"{_setting_name(stands_for.published_key)} none/wd: " + ", ".join(
                f"{OPTIMIZER_NAMES[o]} {reference[o][0]:.2f}/{reference[o][1]:.2f}"
                for o in published.OPTIMIZERS_000))
        for column, optimizer in enumerate(optimizers):
            labels = [(f"{setup.label}/{optimizer}/{decay}", name) for decay, name in FIG1_DECAYS]
            _accuracy_curves(context, axes[row][column], labels,
                             f"{setup.label}: {OPTIMIZER_NAMES[optimizer]}", series)
            finals.append(_final_accuracies(context, [label for label, _ in labels]))
    published_text = " ".join(published_text)
    path = save_plot(context, figure, "p000_fig1.png", series, published_text)
    return plot_artifact(context, path, series, "final test acc.: " + "; ".join(finals))


# ------------------------------------------------------------------------------ figures 2, 6


def _decay_group_runs(scale: Scale, optimizers, setups) -> list[Run]:
    runs = []
    for setup, _ in scaled_setups(scale, setups):
        for optimizer in settings.optimizers_for(scale, optimizers):
            for variant in DECAY_VARIANTS:
                label = f"{setup.label}/{optimizer}/{variant}"
                if variant == "none":
                    runs.append(run_000(scale, label, setup, optimizer, "none"))
                else:
                    runs.append(run_000(scale, label, setup, optimizer, "wd",
                                        decay_group=variant))
    return runs


def _decay_group_report(context: ReportContext, optimizers, setups, filename, claim):
    scaled = scaled_setups(context.scale, setups)
    optimizers = settings.optimizers_for(context.scale, optimizers)
    figure, axes = new_figure(len(scaled), len(optimizers))
    series, finals, published_text = {}, [], [claim]
    names = {"none": "baseline (none)", "top": "wd-fc (top only)",
             "rest": "wd-conv (all but top)", "all": "wd-all"}
    for row, (setup, stands_for) in enumerate(scaled):
        reference = published.TABLE1_000[stands_for.published_key]
        for column, optimizer in enumerate(optimizers):
            labels = [(f"{setup.label}/{optimizer}/{v}", names[v]) for v in DECAY_VARIANTS]
            _accuracy_curves(context, axes[row][column], labels,
                             f"{setup.label}: {OPTIMIZER_NAMES[optimizer]}", series)
            finals.append(_final_accuracies(context, [label for label, _ in labels]))
            published_text.append(
                f"table 1, {_setting_name(stands_for.published_key)}, "
                f"{OPTIMIZER_NAMES[optimizer]}: none {reference[optimizer][0]:.2f}, "
                f"all {reference[optimizer][1]:.2f}.")
    published_text = " ".join(published_text)
    path = save_plot(context, figure, filename, series, published_text)
    return plot_artifact(context, path, series, "final test acc.: " + "; ".join(finals))


FIG2_OPTIMIZERS = ("sgd", "adam")
FIG6_OPTIMIZERS = ("kfac_g", "kfac_f")


def _fig2_runs(scale: Scale) -> list[Run]:
    return _decay_group_runs(scale, FIG2_OPTIMIZERS, (VGG16_BN_AUG,))


def _fig2_report(context: ReportContext):
    return _decay_group_report(context, FIG2_OPTIMIZERS, (VGG16_BN_AUG,), "p000_fig2.png",
                               published.CLAIMS_000["fig2"])


def _fig6_runs(scale: Scale) -> list[Run]:
    return _decay_group_runs(scale, FIG6_OPTIMIZERS, (VGG16_BN_AUG,))


def _fig6_report(context: ReportContext):
    return _decay_group_report(context, FIG6_OPTIMIZERS, (VGG16_BN_AUG,), "p000_fig6.png",
                               published.CLAIMS_000["fig6"])


# ------------------------------------------------------------------------------ figure 3


def _bn_setup(scale: Scale) -> Setup:
    return scaled_setups(scale, (VGG16_BN_AUG,))[0][0]


def _fig3_runs(scale: Scale) -> list[Run]:
    setup = _bn_setup(scale)
    return [run_000(scale, f"sgd/{decay}", setup, "sgd", decay) for decay in ("none", "wd")]


def _fig3_report(context: ReportContext):
    figure, axes = new_figure(1, 2)
    series, ratios = {}, []
    for decay, name in (("none", "no decay"), ("wd", "weight decay (L2, authors' SGD)")):
        label = f"sgd/{decay}"
        histories = context.diagnostic(label, "effective_lr")
        layer = first_key(histories[0][min(histories[0])]) if histories and histories[0] else None
        epochs, values = ([], []) if layer is None else context.diagnostic_curve(
            label, "effective_lr", lambda value: value[layer])
        if epochs:
            axes[0][0].plot(epochs, values, marker="o", markersize=3, label=f"{name} ({layer})")
            ratios.append(f"{label}: η_eff(epoch {epochs[-1]}) / η_eff(epoch {epochs[0]}) = "
                          f"{values[-1] / values[0]:.3g}")
        series[label] = {"x": epochs, "y": values, "layer": layer}
        lr_epochs, rates = context.curve(label, "learning_rate")
        axes[0][1].plot(lr_epochs, rates, marker="o", markersize=3, label=name)
    for ax, title in ((axes[0][0], "effective LR η/‖w‖² of the first BN layer"),
                      (axes[0][1], "scheduled learning rate η")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    path = save_plot(context, figure, "p000_fig3.png", series, published.CLAIMS_000["fig3"])
    return plot_artifact(context, path, series, "; ".join(ratios) or "no measurement")


# ------------------------------------------------------------------------------ figure 4


def _fig4_runs(scale: Scale) -> list[Run]:
    setup = _bn_setup(scale)
    layers = "conv" if scale.is_paper else "normalized"  # an MLP's BN layers are Dense
    baseline = run_000(scale, "baseline", setup, "sgd", "none")
    decayed = run_000(scale, "wd-all (reference)", setup, "sgd", "wd")
    return [baseline, decayed,
            run_000(scale, "wn-conv", setup, "sgd", "none", transfer_from=decayed,
                    transfer_layers=layers),
            run_000(scale, "wd-fc + wn-conv", setup, "sgd", "wd", decay_group="top",
                    transfer_from=decayed, transfer_layers=layers)]


def _fig4_report(context: ReportContext):
    figure, axes = new_figure(1, 1, width=7.0)
    series = {}
    labels = [(run.label, run.label) for run in context.runs]
    _accuracy_curves(context, axes[0][0], labels, "SGD, BN network", series)
    accuracies = {label: _accuracy(context, label) for label, _ in labels}
    base, reference = accuracies["baseline"], accuracies["wd-all (reference)"]
    summary = _final_accuracies(context, [label for label, _ in labels])
    if base and reference and accuracies["wn-conv"] and reference.mean != base.mean:
        closed = (accuracies["wn-conv"].mean - base.mean) / (reference.mean - base.mean)
        summary += f"; wn-conv closes {100 * closed:.0f}% of the decay gap"
    path = save_plot(context, figure, "p000_fig4.png", series, published.CLAIMS_000["fig4"])
    return plot_artifact(context, path, series, "final test acc.: " + summary)


# ------------------------------------------------------------------------------ figure 5

FIG5_VGG = ("vgg11", "vgg13", "vgg16", "vgg19")
FIG5_MNIST_DEPTHS = (1, 2, 3, 4)
FIG5_SMALL_OPTIMIZERS = ("sgd", "kfac_g")


def _fig5_setups(scale: Scale) -> list[Setup]:
    if scale.is_paper:
        mlps = [Setup("mnist", "mlp", False, False,
                      {"depth": depth, "width": settings.MNIST_MLP_WIDTH_000})
                for depth in FIG5_MNIST_DEPTHS]
        return mlps + [paper_setup("cifar10", model, False, False) for model in FIG5_VGG]
    return [small_setup(scale, False, depth) for depth in settings.small_sizes(scale).depths]


def _fig5_runs(scale: Scale) -> list[Run]:
    optimizers = settings.optimizers_for(
        scale, published.OPTIMIZERS_000 if scale.is_paper else FIG5_SMALL_OPTIMIZERS)
    return [run_000(scale, f"{setup.label}/{optimizer}/{decay}", setup, optimizer, decay)
            for setup in _fig5_setups(scale) for optimizer in optimizers
            for decay in ("none", "wd")]


def _fig5_points(context: ReportContext) -> dict:
    points = {}
    for run in context.runs:
        jacobian = context.final_diagnostic(run.label, "jacobian_norm",
                                            lambda v: v["jacobian_norm"])
        gauss_newton = context.final_diagnostic(run.label, "kfac_gauss_newton_norm",
                                                lambda v: v["total"])
        gap = context.final_diagnostic(run.label, "generalization_gap", lambda v: v["gap"])
        points[run.label] = {
            "optimizer": run.config.optimizer, "decay": run.label.rsplit("/", 1)[-1],
            "jacobian_norm": jacobian and jacobian.mean,
            "kfac_gauss_newton_norm": gauss_newton and gauss_newton.mean,
            "generalization_gap": gap and gap.mean}
    return points


def _log_if_wide(set_scale, values) -> None:
    """Log scale for positive values spanning more than a decade (readable ticks otherwise)."""
    values = [v for v in values if v is not None]
    if values and min(values) > 0 and max(values) > 10 * min(values):
        set_scale("log")


def _fig5_report(context: ReportContext):
    points = _fig5_points(context)
    figure, axes = new_figure(1, 2)
    colors = {"sgd": "C0", "adam": "C1", "kfac_f": "C2", "kfac_g": "C3"}
    markers = {"none": "o", "wd": "^"}
    shown = set()
    for label, point in points.items():
        key = (point["optimizer"], point["decay"])
        legend = f"{OPTIMIZER_NAMES[point['optimizer']]}, {point['decay']}"
        style = dict(color=colors[point["optimizer"]], marker=markers[point["decay"]],
                     linestyle="none", label=None if key in shown else legend)
        shown.add(key)
        if point["jacobian_norm"] is None:
            continue
        if point["kfac_gauss_newton_norm"] is not None:
            axes[0][0].plot(point["jacobian_norm"], point["kfac_gauss_newton_norm"], **style)
        if point["generalization_gap"] is not None:
            axes[0][1].plot(point["jacobian_norm"], point["generalization_gap"], **style)
    xs = [p["jacobian_norm"] for p in points.values()]
    r_gn = correlation(xs, [p["kfac_gauss_newton_norm"] for p in points.values()])
    r_gap = correlation(xs, [p["generalization_gap"] for p in points.values()], log_y=False)
    for ax, ylabel, r, what in ((axes[0][0], "K-FAC Gauss-Newton norm", r_gn, "log J, log GN"),
                                (axes[0][1], "generalization gap (test − train loss)", r_gap,
                                 "log J, gap")):
        _log_if_wide(ax.set_xscale, xs)
        ax.set_xlabel("Jacobian norm sqrt(E‖J_x‖²_F)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Pearson r ({what}) = {'—' if r is None else f'{r:.2f}'}", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    _log_if_wide(axes[0][0].set_yscale, [p["kfac_gauss_newton_norm"] for p in points.values()])
    path = save_plot(context, figure, "p000_fig5.png", points, published.CLAIMS_000["fig5"],
                     extra={"correlations": {"jacobian_vs_kfac_gn": r_gn,
                                             "jacobian_vs_gap": r_gap}})
    summary = (f"correlation (log axes) of the Jacobian norm with the K-FAC GN norm r = "
               f"{'—' if r_gn is None else f'{r_gn:.2f}'}, with the generalization gap r = "
               f"{'—' if r_gap is None else f'{r_gap:.2f}'} over {len(points)} runs")
    return plot_artifact(context, path, points, summary)


# ------------------------------------------------------------------------------ table 2

TABLE2_SETUPS = (VGG16_PLAIN, RESNET32_PLAIN)
TABLE2_OPTIMIZERS = ("sgd", "kfac_g")


def _table2_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, f"{setup.label}/{optimizer}/{decay}", setup, optimizer, decay)
            for setup, _ in scaled_setups(scale, TABLE2_SETUPS)
            for optimizer in settings.optimizers_for(scale, TABLE2_OPTIMIZERS)
            for decay in ("none", "wd")]


def _table2_report(context: ReportContext):
    rows, ratios = [], {}
    for setup, stands_for in scaled_setups(context.scale, TABLE2_SETUPS):
        reference = published.TABLE2_000[stands_for.model]
        for optimizer in TABLE2_OPTIMIZERS:
            norms = [context.final_diagnostic(f"{setup.label}/{optimizer}/{decay}",
                                              "jacobian_norm", lambda v: v["jacobian_norm"])
                     for decay in ("none", "wd")]
            ratio = (norms[0].mean / norms[1].mean) if all(norms) else None
            ratios[optimizer] = ratio
            paper_without, paper_with = reference[optimizer]
            rows.append([setup.label, OPTIMIZER_NAMES[optimizer], format_stat(norms[0], 3),
                         format_stat(norms[1], 3), "—" if ratio is None else f"{ratio:.2f}×",
                         f"cifar10 {stands_for.model}", f"{paper_without:g}", f"{paper_with:g}",
                         f"{paper_without / paper_with:.2f}×"])
    header = ["measured setting", "optimizer", "Jacobian norm without decay", "with decay",
              "shrink (without/with)", "published setting", "published without",
              "published with", "published shrink"]
    sgd, kfac = ratios.get("sgd"), ratios.get("kfac_g")
    verdict = ("not measured" if sgd is None or kfac is None else
               f"decay shrinks the Jacobian norm {kfac:.2f}× with KFAC-G vs {sgd:.2f}× with SGD"
               + (" — KFAC-G shrinks it more, as published" if kfac > sgd else
                  " — KFAC-G does NOT shrink it more than SGD here (published: 9.7-33× vs "
                  "2.6-4.0×)"))
    path = write_page(context, "p000_table2.md", [
        "Jacobian norm = sqrt(E_x‖J_x‖²_F) on a fixed 256-example training batch at the end "
        "of training (the paper does not state its normalization; compare the shrink "
        "factors, not the magnitudes). Networks without batch norm.",
        markdown_table(header, rows), f"**Pattern:** {verdict}."])
    return table_artifact(context, path, header, verdict)


# ------------------------------------------------------------------------------ figure 7

FIG7_OPTIMIZERS = ("kfac_f", "kfac_g")


def _fig7_runs(scale: Scale) -> list[Run]:
    setup = _bn_setup(scale)
    return [run_000(scale, f"{optimizer}/{decay}", setup, optimizer, decay)
            for optimizer in settings.optimizers_for(scale, FIG7_OPTIMIZERS)
            for decay in ("none", "wd")]


def _fig7_report(context: ReportContext):
    figure, axes = new_figure(1, 2)
    series, changes = {}, []
    for run in context.runs:
        histories = context.diagnostic(run.label, "effective_damping")
        if not histories or not histories[0]:
            series[run.label] = {}
            continue
        layer = first_key(histories[0][min(histories[0])])
        curves = {}
        for key, style in (("fisher_norm", "-"), ("gauss_newton_norm", "--")):
            epochs, values = context.diagnostic_curve(
                run.label, "effective_damping", lambda value, k=key: value[layer][k])
            axes[0][0].plot(epochs, values, linestyle=style, marker="o", markersize=3,
                            label=f"{run.label}: ‖{'F' if key == 'fisher_norm' else 'G'}_ŵ‖")
            curves[key] = {"x": epochs, "y": values}
            changes.append(f"{run.label} ‖{'F' if key == 'fisher_norm' else 'G'}‖ ×"
                           f"{values[-1] / values[0]:.3g}")
        epochs, damping = context.diagnostic_curve(
            run.label, "effective_damping", lambda value: value[layer]["effective_damping"])
        axes[0][1].plot(epochs, damping, marker="o", markersize=3, label=run.label)
        curves["effective_damping"] = {"x": epochs, "y": damping}
        series[run.label] = dict(curves, layer=layer)
    for ax, title in ((axes[0][0], "curvature norms of the first layer's normalized weights"),
                      (axes[0][1], "effective damping λ‖w‖²")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    path = save_plot(context, figure, "p000_fig7.png", series, published.CLAIMS_000["fig7"])
    summary = ("change from first to last measured epoch: " + "; ".join(changes)
               if changes else "no measurement")
    return plot_artifact(context, path, series, summary)


# ------------------------------------------------------------------------------ table 3

TABLE3_SETUPS = tuple(paper_setup(dataset, model, True, True)
                      for dataset, model in published.TABLE3_000)
TABLE3_OPTIMIZERS = ("sgd", "kfac_f", "kfac_g")


def _table3_batches(scale: Scale) -> tuple:
    return (settings.LARGE_BATCH_SIZES_000 if scale.is_paper
            else settings.small_sizes(scale).batch_sizes_000)


def _table3_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, f"{setup.label}/{optimizer}/{decay}/b{batch}", setup, optimizer,
                    decay, batch_size=batch)
            for setup, _ in scaled_setups(scale, TABLE3_SETUPS)
            for optimizer in settings.optimizers_for(scale, TABLE3_OPTIMIZERS)
            for batch in _table3_batches(scale)
            for decay in ("none", "wd")]


def _table3_report(context: ReportContext):
    batches = _table3_batches(context.scale)
    rows = []
    for setup, stands_for in scaled_setups(context.scale, TABLE3_SETUPS):
        reference = published.TABLE3_000[(stands_for.dataset, stands_for.model)]
        for optimizer in TABLE3_OPTIMIZERS:
            row = [setup.label, OPTIMIZER_NAMES[optimizer]]
            for batch, paper_batch in zip(batches, settings.LARGE_BATCH_SIZES_000):
                measured = [_accuracy(context, f"{setup.label}/{optimizer}/{decay}/b{batch}")
                            for decay in ("none", "wd")]
                paper = reference[optimizer][paper_batch]
                row.append(f"{_percent(measured[0])} / {_percent(measured[1])} "
                           f"(paper {paper[0]:.2f} / {paper[1]:.2f})")
            rows.append(row)
    header = ["measured setting", "optimizer"] + [
        f"batch {b} (paper {p}): without / with decay" for b, p in
        zip(batches, settings.LARGE_BATCH_SIZES_000)]
    published_header = ["published setting", "optimizer"] + [
        f"batch {b}: without / with decay" for b in settings.LARGE_BATCH_SIZES_000]
    published_rows = [
        [f"{dataset} {model}, BN + aug", OPTIMIZER_NAMES[optimizer]]
        + [f"{values[b][0]:.2f} / {values[b][1]:.2f}" for b in settings.LARGE_BATCH_SIZES_000]
        for (dataset, model), by_optimizer in published.TABLE3_000.items()
        for optimizer, values in by_optimizer.items()]
    path = write_page(context, "p000_table3.md", [
        "Test accuracy (%) without / with decay; in parentheses the published numbers of the "
        "paper setting the measured one stands for. Learning rates of larger batches are "
        "scaled by √(B/B₀) from the smallest batch.",
        markdown_table(header, rows), "Published (paper 000, table 3):",
        markdown_table(published_header, published_rows)])
    return table_artifact(context, path, header,
                          f"{len(rows)} optimizer rows × {len(batches)} batch sizes")


# ------------------------------------------------------------------------------ figures 8-9

FIG8_SETUPS = (VGG16_BN_AUG, RESNET32_BN_AUG)
FIG8_RUNS = (("sgd", False), ("adam", False), ("kfac_g", True), ("kfac_f", True))


def _fig8_optimizers(scale: Scale) -> list[tuple[str, bool]]:
    kept = settings.optimizers_for(scale, tuple(optimizer for optimizer, _ in FIG8_RUNS))
    return [(optimizer, constant) for optimizer, constant in FIG8_RUNS if optimizer in kept]


def _fig8_runs(scale: Scale) -> list[Run]:
    kfac_batch = (640 if scale.is_paper else settings.small_sizes(scale).batch_sizes_000[1])
    runs = []
    for setup, _ in scaled_setups(scale, FIG8_SETUPS):
        for optimizer, constant in _fig8_optimizers(scale):
            runs.append(run_000(scale, f"{setup.label}/{optimizer}", setup, optimizer, "wd",
                                batch_size=kfac_batch if constant else None, diagnostics=(),
                                constant_lr=constant))
    return runs


def _fig8_report(context: ReportContext):
    setups = scaled_setups(context.scale, FIG8_SETUPS)
    figure, axes = new_figure(len(setups), 2)
    series, finals = {}, []
    for row, (setup, _) in enumerate(setups):
        for optimizer, _ in _fig8_optimizers(context.scale):
            label = f"{setup.label}/{optimizer}"
            run = context.run(label)
            name = f"{OPTIMIZER_NAMES[optimizer]} (batch {run.config.batch_size})"
            epochs, losses = context.curve(label, "train_loss")
            _, seconds = context.curve(label, "wall_time_seconds")
            elapsed = list(itertools.accumulate(seconds))
            axes[row][0].plot(epochs, losses, marker="o", markersize=3, label=name)
            axes[row][1].plot(elapsed, losses, marker="o", markersize=3, label=name)
            series[label] = {"epochs": epochs, "seconds": elapsed, "train_loss": losses}
            if losses:
                finals.append(f"{label}: loss {losses[-1]:.3g} after {elapsed[-1]:.0f} s")
        for column, xlabel in enumerate(("epoch", "training wall-clock seconds")):
            ax = axes[row][column]
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("training loss")
            ax.set_title(setup.label, fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    path = save_plot(context, figure, "p000_fig8_9.png", series,
                     published.CLAIMS_000["fig8_9"] + " Wall-clock here is a shared CPU.")
    return plot_artifact(context, path, series, "; ".join(finals) or "no measurement")


# ------------------------------------------------------------------------------ registry

EXPERIMENTS = (
    Experiment("p000_table1", "000", "Table 1",
               "Test accuracy with and without weight decay for SGD, Adam, KFAC-F and KFAC-G "
               "(CIFAR-10/100, VGG16 and ResNet32, with/without BN and augmentation).",
               _table1_runs, _table1_report),
    Experiment("p000_fig1", "000", "Figure 1",
               "Test accuracy per epoch: weight decay vs L2 vs no regularization, for each "
               "optimizer (BN + augmentation).", _fig1_runs, _fig1_report),
    Experiment("p000_fig2", "000", "Figure 2",
               "SGD and Adam with decay on no layer / the top layer / all but the top layer / "
               "all layers of a BN network (effective-learning-rate mechanism, §4.1).",
               _fig2_runs, _fig2_report),
    Experiment("p000_fig3", "000", "Figure 3",
               "Effective learning rate η/‖w‖² of a BN layer per epoch, SGD with and without "
               "decay (§4.1).", _fig3_runs, _fig3_report),
    Experiment("p000_fig4", "000", "Figure 4",
               "Weight-norm transfer: a run without decay whose BN layers are rescaled after "
               "every epoch to the decayed run's norms (wn-conv), optionally with decay on the "
               "top layer (wd-fc + wn-conv) (§4.1).", _fig4_runs, _fig4_report),
    Experiment("p000_fig5", "000", "Figure 5",
               "Jacobian norm vs K-FAC Gauss-Newton norm and vs generalization gap across "
               "MLP depths (MNIST) and VGG11-19 (CIFAR-10), no BN (§4.2).",
               _fig5_runs, _fig5_report),
    Experiment("p000_table2", "000", "Table 2",
               "Jacobian norm at the end of training, SGD and KFAC-G with and without decay "
               "(CIFAR-10 VGG16 and ResNet32 without BN) (§4.2).", _table2_runs, _table2_report),
    Experiment("p000_fig6", "000", "Figure 6",
               "KFAC-G and KFAC-F with decay on no layer / top / all but top / all layers of a "
               "BN network (§4.3).", _fig6_runs, _fig6_report),
    Experiment("p000_fig7", "000", "Figure 7",
               "Norms of the Fisher and Gauss-Newton blocks of the first layer's normalized "
               "weights, and the effective damping λ‖w‖², per epoch (§4.3).",
               _fig7_runs, _fig7_report),
    Experiment("p000_table3", "000", "Table 3",
               "Test accuracy with and without decay at batch 128 / 640 / 2000 for SGD, KFAC-F "
               "and KFAC-G (appendix G.1).", _table3_runs, _table3_report),
    Experiment("p000_fig8_9", "000", "Figures 8-9",
               "Training loss per epoch and per wall-clock second: SGD and Adam at batch 128, "
               "K-FAC at batch 640 with a constant learning rate (appendix G.3).",
               _fig8_runs, _fig8_report),
)
