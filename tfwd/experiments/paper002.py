"""Entries of paper 002, "Exploring curvature noise in large-batch stochastic optimization"
(ICLR 2019 submission): figures 1-2 (convex quadratic), figure 3 (a-d) and tables 1-3
(docs/equations.md §5, §8, §9).

Regimes (``REGIMES``; labels as in the paper's tables): SB = batch M_S = 128; LB = batch
M_L = 4096; "+GBN" = ghost batch norm of 128; Trace / Diag-F / K-FAC / Multiplicative = that
curvature noise (``tfwd.noise``) added to the large-batch gradient until epoch 50; BatchChange =
50 SB epochs, then LB. LB regimes of the tables scale the learning rate linearly (square
root in table 3) with warm-up; figure 3 (a-c) gives every regime the same learning rate
("for a fair comparison") and no ghost batch norm.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfwd.data import dataset_info
from tfwd.experiments import published, settings
from tfwd.experiments.published import REGIME_NAMES
from tfwd.experiments.reporting import (ReportContext, format_published,
                                        format_stat, markdown_table, new_figure, plot_artifact,
                                        save_plot, table_artifact, write_page)
from tfwd.experiments.spec import SCALES, Artifact, Experiment, Run, Scale
from tfwd.noise import quadratic
from tfwd.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Regime:
    """How a regime trains: large batch?, ghost BN?, which noise, same LR as SB?, BatchChange?"""

    large_batch: bool
    ghost: bool = False
    noise: str = "none"
    same_learning_rate: bool = False
    batch_change: bool = False


REGIMES = {
    "sb": Regime(large_batch=False),
    "lb_gbn": Regime(large_batch=True, ghost=True),
    "trace": Regime(large_batch=True, ghost=True, noise="trace"),
    "diag_f": Regime(large_batch=True, ghost=True, noise="diag_fisher"),
    "kfac": Regime(large_batch=True, ghost=True, noise="kfac"),
    "multiplicative": Regime(large_batch=True, ghost=True, noise="multiplicative"),
    "batch_change": Regime(large_batch=True, ghost=True, batch_change=True),
    # Figure 3 (a-c): one learning rate for all, no ghost batch norm.
    "lb": Regime(large_batch=True, same_learning_rate=True),
    "full_f": Regime(large_batch=True, noise="full_fisher", same_learning_rate=True),
    "diag_f_plain": Regime(large_batch=True, noise="diag_fisher", same_learning_rate=True),
    "kfac_plain": Regime(large_batch=True, noise="kfac", same_learning_rate=True),
}
TABLE_DIAGNOSTICS = ("hessian_eigenvalue",)  # every table run also serves figure 3d


def _paper_model(model: str) -> tuple[str, dict]:
    """'resnet44x2' -> ('resnet44', {'width_factor': 2}); others with their paper kwargs."""
    base = "resnet44" if model.startswith("resnet44") else model
    return base, dict(settings.PAPER_MODEL_KWARGS.get(model, {}))


def run_002(scale: Scale, row: tuple, regime: str, *, lr_scaling: str = "linear",
            diagnostics: tuple = TABLE_DIAGNOSTICS) -> Run:
    """One run of paper 002: ``row`` = (dataset, model) of the paper's tables (at small scales
    the MNIST row whose model is trained: "mlp", or "lenet" — an MLP at tiny scale)."""
    spec = REGIMES[regime]
    dataset, model = row
    label = _label(row, regime, lr_scaling)
    fields = dict(settings.SGD_SETTINGS_002, batch_norm=True, bn_affine=False,
                  noise=spec.noise, diagnostics=list(diagnostics), verbose=0)
    search = None
    if scale.name in ("paper", "mnist_paper"):
        small, large, ghost = (settings.SMALL_BATCH_002, settings.LARGE_BATCH_002,
                               settings.GHOST_BATCH_002)
        epochs = settings.EPOCHS_002
        phase = settings.NOISE_UNTIL_EPOCH_002
        warmup = settings.WARMUP_EPOCHS_002
        batch_change_epochs = settings.SMALL_BATCH_EPOCHS_002
        fields["lr_decay_every_epochs"] = settings.LR_DECAY_EVERY_EPOCHS_002
        if scale.is_paper:
            model_name, kwargs = _paper_model(model)
            fields.update(dataset=dataset, model=model_name, model_kwargs=kwargs,
                          augment=dataset.startswith("cifar"),
                          train_split=settings.PAPER_TRAIN_SPLIT)
        else:
            fields.update(_mnist_paper_fields(model))
            search = {"learning_rate": settings.MNIST_PAPER_LEARNING_RATES}
        seeds = settings.seeds(scale, settings.SEEDS_002)
    else:
        sizes = settings.small_sizes(scale)
        small, large = sizes.batch_size, sizes.large_batch
        ghost = small
        epochs = settings.small_epochs(scale)
        phase = settings.small_phase_epochs(epochs)
        warmup = settings.small_warmup_epochs(epochs)
        batch_change_epochs = min(phase, epochs - 1)  # at least one large-batch epoch
        trained = sizes.conv_model if model == "lenet" else "mlp"
        fields.update(dataset="mnist", model=trained,
                      model_kwargs=dict(sizes.mlp) if trained == "mlp" else {},
                      augment=False, train_split="train",
                      lr_decay_every_epochs=settings.small_lr_decay_every_epochs(epochs))
        seeds = settings.seeds(scale)
    fields.update(epochs=epochs, small_batch_size=small, noise_until_epoch=phase,
                  base_batch_size=small, evaluate_test=True)
    if spec.large_batch:
        fields["batch_size"] = large
        if not spec.same_learning_rate:
            fields.update(lr_scaling=lr_scaling, warmup_epochs=warmup)
    else:
        fields["batch_size"] = small
    if spec.ghost:
        fields["ghost_batch_size"] = ghost
    if spec.batch_change:
        fields["small_batch_epochs"] = batch_change_epochs
    return Run(label, TrainConfig(**fields), seeds=seeds, search=search,
               search_once=search is not None)


def _mnist_paper_fields(model: str) -> dict:
    """The mnist_paper scale's network, data and diagnostics: seeds train on ``train`` so that
    the held-out split that chose their learning rate is also reported (test once, at the
    end), and figure 3's diagnostics are recorded sparsely (``settings``)."""
    return dict(dataset="mnist", model=model,
                model_kwargs=dict(settings.MNIST_PAPER_MLP) if model == "mlp" else {},
                augment=False, train_split="train", test_every_epoch=False,
                diagnostics=list(settings.MNIST_PAPER_DIAGNOSTICS),
                diagnostics_every_epochs=settings.MNIST_PAPER_DIAGNOSTICS_EVERY_EPOCHS)


def _rows(scale: Scale, paper_rows, small_rows) -> list[tuple]:
    """The (dataset, network) rows of a table at ``scale``: the paper's, the small scales'
    MNIST stand-ins, or at the mnist_paper scale the paper's MNIST rows (``scale.networks``)."""
    if scale.is_paper:
        return list(paper_rows)
    if scale.name == "mnist_paper":
        return [row for row in paper_rows if row[0] == "mnist"
                and (scale.networks is None or row[1] in scale.networks)]
    return list(small_rows)


def _accuracy(context: ReportContext, label: str):
    return context.final(label, "test_accuracy")


def _batch_settings(context: ReportContext) -> str:
    """The measured runs' M_S, M_L, ghost batch, LR rule, warm-up and noise phase."""
    small = [r.config for r in context.runs if not REGIMES[_regime(r.label)].large_batch]
    large = [r.config for r in context.runs if REGIMES[_regime(r.label)].ghost]
    if not small or not large:
        return ""
    s, l = small[0], large[0]
    searched = any(r.search for r in context.runs)
    rate = "η₀ searched per regime (below)" if searched else f"η₀ = {l.learning_rate:g}"
    return (f"Measured runs: M_S = {s.batch_size}, M_L = {l.batch_size}, ghost batch "
            f"{l.ghost_batch_size}, {l.lr_scaling} LR scaling from {rate} at "
            f"batch {l.base_batch_size} with {l.warmup_epochs:g} warm-up epoch(s), noise until "
            f"epoch {l.noise_until_epoch} of {l.epochs}.")


def _regime(label: str) -> str:
    return next(part for part in reversed(label.split("/")) if part in REGIMES)


def _model_text(config: TrainConfig) -> str:
    kwargs = ",".join(f"{k}={v}" for k, v in sorted(config.model_kwargs.items()))
    return config.model + (f"({kwargs})" if kwargs else "")


def _regime_table(context: ReportContext, rows, regimes, published_table, filename: str,
                  intro: str = "", scaling=lambda regime: "linear", extra=()) -> Artifact:
    """Measured test accuracy per (row, regime), the published value in the cell where the
    paper has the same (dataset, network), then the whole published table."""
    header = ["dataset", "network (trained)"] + [REGIME_NAMES[r] for r in regimes]
    measured_rows, summary = [], []
    for row in rows:
        reference = published_table.get(row, {})
        example = context.run(_label(row, regimes[0], scaling(regimes[0]))).config
        cells = [row[0], f"{row[1]} ({_model_text(example)})"]
        for regime in regimes:
            value = _accuracy(context, _label(row, regime, scaling(regime)))
            cell = format_stat(value, 2, 100.0)
            if regime in reference:
                cell += f" (paper {format_published(reference[regime])})"
            cells.append(cell)
            summary.append(f"{row[1]} {REGIME_NAMES[regime]} {format_stat(value, 2, 100.0)}")
        measured_rows.append(cells)
    published_rows = [[dataset, model] + [format_published(values.get(r)) for r in regimes]
                      for (dataset, model), values in published_table.items()]
    path = write_page(context, filename, [
        f"{intro} {_batch_settings(context)} Test accuracy (%); the paper reports "
        "'validation accuracy' (the test set for CIFAR).", markdown_table(header, measured_rows),
        "Published (paper 002):", markdown_table(["dataset", "network"] + header[2:],
                                                 published_rows), *extra])
    return table_artifact(context, path, header, "; ".join(summary))


def _label(row: tuple, regime: str, lr_scaling: str = "linear") -> str:
    return f"{row[0]}/{row[1]}/{regime}" + (f"/{lr_scaling}" if lr_scaling != "linear" else "")


# ------------------------------------------------------------------------------ table 1

TABLE1_REGIMES = ("sb", "lb_gbn", "trace", "diag_f")
SMALL_TABLE1_ROWS = (("mnist", "mlp"), ("mnist", "lenet"))
SMALL_CIFAR_STAND_IN = (("mnist", "mlp"),)


def _table1_runs(scale: Scale) -> list[Run]:
    return [run_002(scale, row, regime) for row in
            _rows(scale, published.TABLE1_002, SMALL_TABLE1_ROWS) for regime in TABLE1_REGIMES]


def _table1_report(context: ReportContext):
    rows = _rows(context.scale, published.TABLE1_002, SMALL_TABLE1_ROWS)
    extra = _searched_sections(context, rows, TABLE1_REGIMES) if any(
        r.search_once for r in context.runs) else ()
    return _regime_table(context, rows, TABLE1_REGIMES, published.TABLE1_002,
                         "p002_table1.md", intro="Paper: M_L = 4096, M_S = 128, ghost BN 128, "
                         "linear LR scaling with warm-up, noise until epoch 50 of 200.",
                         extra=extra)


def _searched_sections(context: ReportContext, rows, regimes) -> list[str]:
    """mnist_paper scale: validation beside test accuracy, the learning-rate search of each
    regime (one seed per grid point, scored on the held-out split), the compute, and
    figure 3's diagnostics at the last epoch."""
    accuracy, search, compute, diagnostics = [], [], [], []
    for row in rows:
        for regime in regimes:
            label = _label(row, regime)
            finished = context.finished(label)
            name = f"{row[1]} {REGIME_NAMES[regime]}"
            accuracy.append([name, format_stat(context.final(label, "validation_accuracy"), 2,
                                               100.0),
                             format_stat(_accuracy(context, label), 2, 100.0)])
            report = context.search(label)
            seconds = [sum(e["wall_time_seconds"] for e in r["epochs"]) for r in finished]
            trial_seconds = sum(t.get("train_seconds", 0.0) for t in report["trials"]) \
                if report else 0.0
            if report:
                search.append([name, _trials_text(report), _chosen_text(report),
                               _first_seed_check(context, label, report)])
            compute.append([name, f"{trial_seconds:.0f}",
                            " / ".join(f"{x:.0f}" for x in seconds) or "—",
                            f"{(trial_seconds + sum(seconds)) / 3600:.2f}"])
            diagnostics.append([name] + _final_diagnostics(context, label))
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


def _first_seed_check(context: ReportContext, label: str, report: dict) -> str:
    """Whether the first seed's final validation accuracy repeats the chosen trial's."""
    first = context.results[label][0]
    if not first or report["best"] is None:
        return "—"
    trial = report["best"]["validation_accuracy"]
    seed = first["epochs"][-1]["validation_accuracy"]
    return ("yes" if seed == trial else "NO") + f" ({100 * seed:.2f} vs {100 * trial:.2f})"


def _final_diagnostics(context: ReportContext, label: str) -> list[str]:
    """Figure 3's three measures at each seed's last measured epoch (undefined ones left
    out, e.g. no temperature calibrates the model): formatted mean ± sd (n)."""
    def defined(extract):
        return lambda v: None if "undefined" in v else extract(v)

    measures = (("fisher_norms", lambda v: v["full"] / v["diagonal"] if v["diagonal"]
                 else None),
                ("gradient_variance", lambda v: float(np.mean(list(v.values())))),
                ("hessian_eigenvalue", lambda v: v["eigenvalue"]))
    cells = []
    for name, extract in measures:
        value = context.final_diagnostic(label, name, defined(extract))
        cells.append("—" if value is None else f"{value.mean:.3g} ± {value.std:.2g} "
                     f"(n={value.n})")
    return cells


# ------------------------------------------------------------------------------ table 2

TABLE2_REGIMES = ("sb", "batch_change", "multiplicative", "kfac", "diag_f")


def _table2_runs(scale: Scale) -> list[Run]:
    return [run_002(scale, row, regime) for row in
            _rows(scale, published.TABLE2_002, SMALL_CIFAR_STAND_IN) for regime in TABLE2_REGIMES]


def _table2_report(context: ReportContext):
    rows = _rows(context.scale, published.TABLE2_002, SMALL_CIFAR_STAND_IN)
    return _regime_table(context, rows, TABLE2_REGIMES, published.TABLE2_002,
                         "p002_table2.md", intro="BatchChange: small batch for the first "
                         "quarter of training, then large; Multiplicative: gradient × (1 + "
                         "N(0, 0.1²)); K-FAC: noise with covariance A ⊗ G.")


# ------------------------------------------------------------------------------ table 3

TABLE3_REGIMES = ("sb", "lb_gbn", "diag_f")


def _table3_scaling(regime: str) -> str:
    """Square-root scaling for the large-batch regimes (SB is table 1's run)."""
    return "linear" if regime == "sb" else "sqrt"


def _table3_runs(scale: Scale) -> list[Run]:
    return [run_002(scale, row, regime, lr_scaling=_table3_scaling(regime))
            for row in _rows(scale, published.TABLE3_002, SMALL_CIFAR_STAND_IN)
            for regime in TABLE3_REGIMES]


def _table3_report(context: ReportContext):
    rows = _rows(context.scale, published.TABLE3_002, SMALL_CIFAR_STAND_IN)
    return _regime_table(context, rows, TABLE3_REGIMES, published.TABLE3_002,
                         "p002_table3.md", intro="Large-batch regimes with square-root "
                         "learning-rate scaling η = η₀·√(M_L/M_S) (warm-up as in table 1).",
                         scaling=_table3_scaling)


# ------------------------------------------------------------------------------ figure 3

FIG3_ROW = ("cifar10", "resnet44")
FIG3_REGIMES = ("sb", "lb", "full_f", "diag_f_plain", "kfac_plain")
FIG3D_ROWS = (("cifar10", "resnet44"), ("cifar100", "resnet44x2"), ("cifar10", "vgg16"),
              ("cifar100", "vgg16"))
FIG3D_REGIMES = ("sb", "lb_gbn", "diag_f")
FIG3_FISHER_REGIME = "sb"


def _fig3_rows(scale: Scale) -> tuple[tuple, tuple]:
    if scale.is_paper:
        return FIG3_ROW, FIG3D_ROWS
    return SMALL_CIFAR_STAND_IN[0], SMALL_CIFAR_STAND_IN


def _fig3_runs(scale: Scale) -> list[Run]:
    row, rows_d = _fig3_rows(scale)
    runs = []
    for regime in FIG3_REGIMES:
        diagnostics = (("fisher_norms", "gradient_variance") if regime == FIG3_FISHER_REGIME
                       else ("gradient_variance",))
        run = run_002(scale, row, regime, diagnostics=diagnostics)
        runs.append(dataclasses.replace(run, label=f"abc/{run.label}"))
    runs += [run_002(scale, r, regime) for r in rows_d for regime in FIG3D_REGIMES]
    return runs


def _steps_per_epoch(config: TrainConfig) -> int:
    return dataset_info(config.dataset).split_sizes[config.train_split] // config.batch_size


def _fig3_report(context: ReportContext):
    row, rows_d = _fig3_rows(context.scale)
    figure, axes = new_figure(2, 2)
    series, summary = {}, []
    # (a) Frobenius norms of the full and diagonal empirical Fisher.
    label_a = f"abc/{_label(row, FIG3_FISHER_REGIME)}"
    for key, name in (("full", "full Fisher ‖F‖_F"), ("diagonal", "diagonal ‖diag F‖_F")):
        epochs, values = context.diagnostic_curve(label_a, "fisher_norms", lambda v, k=key: v[k])
        axes[0][0].plot(epochs, values, marker="o", markersize=3, label=name)
        series[f"a/{key}"] = {"x": epochs, "y": values}
    full, diagonal = series["a/full"]["y"], series["a/diagonal"]["y"]
    if full and diagonal:
        summary.append(f"(a) ‖F‖_F/‖diag F‖_F = {full[-1] / diagonal[-1]:.3g} at the end")
    axes[0][0].set_title(f"(a) Fisher norms, {REGIME_NAMES[FIG3_FISHER_REGIME]} run",
                         fontsize=9)
    axes[0][0].set_xlabel("epoch")
    # (b) per-layer gradient variance at the last measured epoch; (c) train error vs steps.
    for regime in FIG3_REGIMES:
        label = f"abc/{_label(row, regime)}"
        histories = [h for h in context.diagnostic(label, "gradient_variance") if h]
        if histories:
            last = min(max(h) for h in histories)
            layers = list(histories[0][last])
            values = [float(np.mean([h[last][layer] for h in histories])) for layer in layers]
            axes[0][1].plot(range(len(layers)), values, marker="o", markersize=4,
                            label=REGIME_NAMES[regime])
            axes[0][1].set_xticks(range(len(layers)), layers, rotation=45, fontsize=6)
            series[f"b/{regime}"] = {"x": layers, "y": values, "epoch": last}
        else:
            series[f"b/{regime}"] = {"x": [], "y": []}
        epochs, accuracy = context.curve(label, "train_accuracy")
        steps = (_steps_per_epoch(context.run(label).config) if epochs else 0)
        iterations = [epoch * steps for epoch in epochs]
        error = [100.0 * (1.0 - a) for a in accuracy]
        axes[1][0].plot(iterations, error, marker="o", markersize=3, label=REGIME_NAMES[regime])
        series[f"c/{regime}"] = {"x": iterations, "y": error}
    axes[0][1].set_yscale("log")
    axes[0][1].set_title("(b) marginal gradient variance per layer", fontsize=9)
    axes[1][0].set_title("(c) training error vs iterations (same LR for all)", fontsize=9)
    axes[1][0].set_xlabel("iterations")
    axes[1][0].set_ylabel("train error (%)")
    # (d) largest Hessian eigenvalue at the end of training (BN folded, temperature fitted).
    width = 0.8 / len(FIG3D_REGIMES)
    eigen_summary = []
    for index, regime in enumerate(FIG3D_REGIMES):
        means, spreads = [], []
        for r in rows_d:
            value = context.final_diagnostic(_label(r, regime), "hessian_eigenvalue",
                                              lambda v: v["eigenvalue"])
            means.append(np.nan if value is None else value.mean)
            spreads.append(0.0 if value is None else value.std)
            eigen_summary.append(f"{r[1]} {REGIME_NAMES[regime]} {format_stat(value, 3)}")
        positions = np.arange(len(rows_d)) + index * width
        axes[1][1].bar(positions, means, width, yerr=spreads, label=REGIME_NAMES[regime])
        series[f"d/{regime}"] = {"x": ["/".join(r) for r in rows_d], "y": means,
                                 "std": spreads}
    axes[1][1].set_xticks(np.arange(len(rows_d)) + width, ["/".join(r) for r in rows_d],
                          fontsize=7)
    axes[1][1].set_title("(d) largest Hessian eigenvalue at the end", fontsize=9)
    summary.append("(d) λ_max: " + ", ".join(eigen_summary))
    for ax in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_yscale("log")
    path = save_plot(context, figure, "p002_fig3.png", series, published.CLAIMS_002["fig3"])
    return plot_artifact(context, path, series, "; ".join(summary))


# ------------------------------------------------------------------------------ figures 1-2

# The paper gives only α = 0.1, 500 iterations, plotted every 10; the matrix, start and
# noise scale are chosen here: a correlated, unevenly scaled 2-D quadratic (eigenvalues 3.51
# and 0.19; unequal diagonal, so diagonal and isotropic noise differ) started near its slow
# direction, so that the three noise structures separate: Tr(CᵀAC)/s² = ‖A‖²_F = 12.37,
# ‖diag A‖²_F = 9.49, Tr(A)²/2 = 6.85.
QUADRATIC_MATRIX = ((3.0, 1.2), (1.2, 0.7))
QUADRATIC_START = (1.0, -2.5)
QUADRATIC_LEARNING_RATE = 0.1
QUADRATIC_NOISE_SCALE = 0.3
QUADRATIC_SETTINGS = {  # scale -> (iterations, Monte Carlo seeds, plot every)
    "paper": (500, 1000, 10),
    "smoke": (500, 200, 10),
    "tiny": (50, 10, 5),
}


def _fig1_2_runs(scale: Scale) -> list[Run]:
    return []  # no network is trained: the study is exact numpy (tfwd.noise.quadratic)


def _fig1_2_report(context: ReportContext):
    steps, num_seeds, every = QUADRATIC_SETTINGS[context.scale.name]
    if context.scale.seeds:
        num_seeds = max(2, context.scale.seeds)
    if context.scale.epochs:
        steps = context.scale.epochs
    matrix = np.asarray(QUADRATIC_MATRIX)
    trajectories = quadratic.plot_trajectories(
        matrix, path=context.path("p002_fig1_2_trajectories.png"),
        learning_rate=QUADRATIC_LEARNING_RATE, steps=steps, seed=0, theta0=QUADRATIC_START,
        noise_scale=QUADRATIC_NOISE_SCALE, plot_every=every)
    study = quadratic.run_quadratic_study(
        matrix, learning_rate=QUADRATIC_LEARNING_RATE, steps=steps, num_seeds=num_seeds,
        theta0=QUADRATIC_START, seed=0, noise_scale=QUADRATIC_NOISE_SCALE)
    expected = quadratic.plot_expected_loss(study, context.path("p002_fig1_2_expected_loss.png"))
    rows = []
    for kind, result in study["kinds"].items():
        rows.append([quadratic.NOISE_LABELS[kind], f"{result['trace_ct_a_c']:.4g}",
                     f"{result['final_expected_loss']:.4g} ± "
                     f"{result['final_standard_error']:.2g}",
                     f"{result['exact_expected_loss'][-1]:.4g}",
                     f"{result['stationary_expected_loss']:.4g}"])
    header = ["noise C", "Tr(CᵀAC)", f"E[L] after {steps} steps (Monte Carlo ± SE)",
              "exact E[L]", "E[L_∞]"]
    kinds = study["kinds"]
    final = {kind: kinds[kind]["exact_expected_loss"][-1] for kind in ("diagonal", "fisher")}
    verdict = (f"after {steps} steps the expected loss with diagonal Fisher noise "
               f"({final['diagonal']:.4g}) is "
               + ("below" if final["diagonal"] < final["fisher"] else "NOT below")
               + f" that with full Fisher noise ({final['fisher']:.4g}) (exact expectation)")
    path = write_page(context, "p002_fig1_2.md", [
        f"L(θ) = ½θᵀAθ, A = {QUADRATIC_MATRIX}, θ₀ = {QUADRATIC_START}, α = "
        f"{QUADRATIC_LEARNING_RATE}, noise scale s = {QUADRATIC_NOISE_SCALE} (every C is s "
        f"times the listed matrix); {num_seeds} Monte Carlo seeds. Published: "
        + published.CLAIMS_002["fig1_2"],
        markdown_table(header, rows), f"**Measured:** {verdict}.",
        f"![trajectories]({os.path.basename(trajectories)})",
        f"![expected loss]({os.path.basename(expected)})"])
    return Artifact(path=os.path.relpath(path, context.out_dir), kind="page",
                    summary=verdict, series=[quadratic.NOISE_LABELS[k] for k in kinds])


# ------------------------------------------------------------------------------ registry

EXPERIMENTS = (
    Experiment("p002_fig1_2", "002", "Figures 1-2",
               "Noisy gradient descent on a 2-D convex quadratic with full Fisher, diagonal "
               "Fisher, isotropic and no noise: trajectories and expected loss (§3.2).",
               _fig1_2_runs, _fig1_2_report),
    Experiment("p002_fig3", "002", "Figure 3 (a-d)",
               "(a) full vs diagonal Fisher norm over training; (b) per-layer gradient variance "
               "and (c) training error vs iterations for SB, LB, LB+full F, LB+diag F (and "
               "LB+K-FAC noise) at one learning rate; (d) largest Hessian eigenvalue at the end "
               "for SB, LB+GBN, LB+diag F (§4.1-4.2).", _fig3_runs, _fig3_report),
    Experiment("p002_table1", "002", "Table 1",
               "Accuracy of SB, LB+GBN, LB+GBN+trace noise and LB+GBN+diagonal Fisher noise "
               "(§4.3).", _table1_runs, _table1_report, scales=SCALES),
    Experiment("p002_table2", "002", "Table 2",
               "Accuracy of BatchChange, Multiplicative and K-FAC noise beside SB and Diag-F "
               "(appendix E).", _table2_runs, _table2_report),
    Experiment("p002_table3", "002", "Table 3",
               "LB+GBN and Diag-F+GBN with square-root learning-rate scaling (appendix E).",
               _table3_runs, _table3_report),
)
