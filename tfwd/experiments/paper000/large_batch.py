"""Paper 000's large-batch appendix (G): table 3 (with vs without decay at batch 128 / 640 /
2000) and figures 8-9 (training loss per epoch and per wall-clock second)."""
from __future__ import annotations

import itertools

from tfwd.choices.optimizers import DISPLAY_NAMES, Optimizer
from tfwd.experiments import published, settings
from tfwd.experiments.paper000.common import accuracy, percent
from tfwd.experiments.paper000.runs import (DECAYS, PAPER_DECAY, RESNET32_BN_AUG, VGG16_BN_AUG,
                                            paper_setup, run_000, run_key, scaled_setups)
from tfwd.experiments.plots import new_figure, plot_artifact, save_plot, style_axes
from tfwd.experiments.reporting import (ReportContext, markdown_table, table_artifact,
                                        write_page)
from tfwd.experiments.spec import Experiment, Run, Scale

# ------------------------------------------------------------------------------ table 3

TABLE3_SETUPS = tuple(paper_setup(dataset, model, True, True)
                      for dataset, model in published.TABLE3_000)
TABLE3_OPTIMIZERS = (Optimizer.SGD, Optimizer.KFAC_F, Optimizer.KFAC_G)
PAPER_BATCHES = settings.LARGE_BATCH_SIZES_000


def _table3_batches(scale: Scale) -> tuple:
    return PAPER_BATCHES if scale.is_paper else settings.small_sizes(scale).batch_sizes_000


def _table3_runs(scale: Scale) -> list[Run]:
    return [run_000(scale, run_key(setup, optimizer, decay, batch), setup, optimizer, decay,
                    batch_size=batch)
            for setup, _ in scaled_setups(scale, TABLE3_SETUPS)
            for optimizer in settings.optimizers_for(scale, TABLE3_OPTIMIZERS)
            for batch in _table3_batches(scale)
            for decay in DECAYS]


def _table3_row(context: ReportContext, setup, reference: dict, optimizer: str) -> list:
    """Measured without / with decay per batch, the published pair in parentheses."""
    row = [setup.label, DISPLAY_NAMES[optimizer]]
    for batch, paper_batch in zip(_table3_batches(context.scale), PAPER_BATCHES):
        measured = [accuracy(context, run_key(setup, optimizer, decay, batch))
                    for decay in DECAYS]
        paper = reference[optimizer][paper_batch]
        row.append(f"{percent(measured[0])} / {percent(measured[1])} "
                   f"(paper {paper[0]:.2f} / {paper[1]:.2f})")
    return row


def _published_table3() -> str:
    header = ["published setting", "optimizer"] + [
        f"batch {b}: without / with decay" for b in PAPER_BATCHES]
    rows = [[f"{dataset} {model}, BN + aug", DISPLAY_NAMES[optimizer]]
            + [f"{values[b][0]:.2f} / {values[b][1]:.2f}" for b in PAPER_BATCHES]
            for (dataset, model), by_optimizer in published.TABLE3_000.items()
            for optimizer, values in by_optimizer.items()]
    return markdown_table(header, rows)


def _table3_report(context: ReportContext):
    batches = _table3_batches(context.scale)
    rows = [_table3_row(context, setup,
                        published.TABLE3_000[(stands_for.dataset, stands_for.model)], optimizer)
            for setup, stands_for in scaled_setups(context.scale, TABLE3_SETUPS)
            for optimizer in TABLE3_OPTIMIZERS]
    header = ["measured setting", "optimizer"] + [
        f"batch {b} (paper {p}): without / with decay" for b, p in zip(batches, PAPER_BATCHES)]
    path = write_page(context, "p000_table3.md", [
        "Test accuracy (%) without / with decay; in parentheses the published numbers of the "
        "paper setting the measured one stands for. Learning rates of larger batches are "
        "scaled by √(B/B₀) from the smallest batch.",
        markdown_table(header, rows), "Published (paper 000, table 3):", _published_table3()])
    return table_artifact(context, path, header,
                          f"{len(rows)} optimizer rows × {len(batches)} batch sizes")


# ------------------------------------------------------------------------------ figures 8-9

FIG8_SETUPS = (VGG16_BN_AUG, RESNET32_BN_AUG)
# (optimizer, whether it trains at the large batch with a constant learning rate)
FIG8_RUNS = ((Optimizer.SGD, False), (Optimizer.ADAM, False), (Optimizer.KFAC_G, True),
             (Optimizer.KFAC_F, True))
FIG8_KFAC_PAPER_BATCH = 640


def _fig8_optimizers(scale: Scale) -> list[tuple[str, bool]]:
    kept = settings.optimizers_for(scale, tuple(optimizer for optimizer, _ in FIG8_RUNS))
    return [(optimizer, constant) for optimizer, constant in FIG8_RUNS if optimizer in kept]


def _fig8_runs(scale: Scale) -> list[Run]:
    kfac_batch = (FIG8_KFAC_PAPER_BATCH if scale.is_paper
                  else settings.small_sizes(scale).batch_sizes_000[1])
    return [run_000(scale, run_key(setup, optimizer), setup, optimizer, PAPER_DECAY,
                    batch_size=kfac_batch if constant else None, diagnostics=(),
                    constant_lr=constant)
            for setup, _ in scaled_setups(scale, FIG8_SETUPS)
            for optimizer, constant in _fig8_optimizers(scale)]


def _loss_curves(context: ReportContext, axes_row, setup, series: dict, finals: list) -> None:
    """Training loss of each optimizer per epoch (left) and per training second (right)."""
    for optimizer, _ in _fig8_optimizers(context.scale):
        key = run_key(setup, optimizer)
        name = f"{DISPLAY_NAMES[optimizer]} (batch {context.run(key).config.schedule.batch_size})"
        epochs, losses = context.curve(key, "train_loss")
        _, seconds = context.curve(key, "wall_time_seconds")
        elapsed = list(itertools.accumulate(seconds))
        axes_row[0].plot(epochs, losses, marker="o", markersize=3, label=name)
        axes_row[1].plot(elapsed, losses, marker="o", markersize=3, label=name)
        series[key.label] = {"epochs": epochs, "seconds": elapsed, "train_loss": losses}
        if losses:
            finals.append(f"{key.label}: loss {losses[-1]:.3g} after {elapsed[-1]:.0f} s")
    for column, xlabel in enumerate(("epoch", "training wall-clock seconds")):
        style_axes(axes_row[column], title=setup.label, xlabel=xlabel, ylabel="training loss",
                   log_y=True)


def _fig8_report(context: ReportContext):
    setups = scaled_setups(context.scale, FIG8_SETUPS)
    figure, axes = new_figure(len(setups), 2)
    series, finals = {}, []
    for row, (setup, _) in enumerate(setups):
        _loss_curves(context, axes[row], setup, series, finals)
    path = save_plot(context, figure, "p000_fig8_9.png", series,
                     published.CLAIMS_000["fig8_9"] + " Wall-clock here is a shared CPU.")
    return plot_artifact(context, path, series, "; ".join(finals) or "no measurement")


TABLE3 = Experiment(
    "p000_table3", "000", "Table 3",
    "Test accuracy with and without decay at batch 128 / 640 / 2000 for SGD, KFAC-F "
    "and KFAC-G (appendix G.1).", _table3_runs, _table3_report)
FIG8_9 = Experiment(
    "p000_fig8_9", "000", "Figures 8-9",
    "Training loss per epoch and per wall-clock second: SGD and Adam at batch 128, "
    "K-FAC at batch 640 with a constant learning rate (appendix G.3).",
    _fig8_runs, _fig8_report)
