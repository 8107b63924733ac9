"""Paper 002's accuracy tables: table 1 (SB, LB+GBN, trace and diagonal Fisher noise, §4.3),
table 2 (BatchChange, Multiplicative and K-FAC noise, appendix E) and table 3 (square-root
learning-rate scaling, appendix E)."""
from __future__ import annotations

from tfwd.choices.regimes import RegimeName
from tfwd.choices.schedules import LearningRateScaling
from tfwd.experiments import published
from tfwd.experiments.paper002.regimes import (DEFAULT_LR_SCALING, REGIMES,
                                               SMALL_CIFAR_STAND_IN, SMALL_TABLE1_ROWS, rows,
                                               run_002, run_key)
from tfwd.experiments.paper002.searched import searched_sections
from tfwd.experiments.published import REGIME_LABELS
from tfwd.experiments.reporting import (ReportContext, format_published, format_stat,
                                        markdown_table, model_text, table_artifact,
                                        write_page)
from tfwd.experiments.spec import SCALES, Artifact, Experiment, Run, Scale


def _batch_settings(context: ReportContext) -> str:
    """The measured runs' M_S, M_L, ghost batch, LR rule, warm-up and noise phase."""
    small = [r.config for r in context.runs if not REGIMES[r.key.regime].large_batch]
    large = [r.config for r in context.runs if REGIMES[r.key.regime].ghost]
    if not small or not large:
        return ""
    s, l = small[0], large[0]
    searched = any(r.search for r in context.runs)
    rate = "η₀ searched per regime (below)" if searched else f"η₀ = {l.optimizer.learning_rate:g}"
    return (f"Measured runs: M_S = {s.schedule.batch_size}, M_L = {l.schedule.batch_size}, "
            f"ghost batch {l.model.ghost_batch_size}, {l.schedule.lr_scaling} LR scaling from "
            f"{rate} at batch {l.schedule.base_batch_size} with {l.schedule.warmup_epochs:g} "
            f"warm-up epoch(s), noise until epoch {l.noise.until_epoch} of {l.schedule.epochs}.")


def _measured_row(context: ReportContext, row: tuple, regimes, reference: dict, scaling,
                  summary: list) -> list[str]:
    """A row's measured test accuracy per regime, the published value beside it."""
    example = context.run(run_key(row, regimes[0], scaling(regimes[0]))).config
    cells = [row[0], f"{row[1]} ({model_text(example)})"]
    for regime in regimes:
        value = context.final(run_key(row, regime, scaling(regime)), "test_accuracy")
        cell = format_stat(value, 2, 100.0)
        if regime in reference:
            cell += f" (paper {format_published(reference[regime])})"
        cells.append(cell)
        summary.append(f"{row[1]} {REGIME_LABELS[regime]} {format_stat(value, 2, 100.0)}")
    return cells


def _regime_table(context: ReportContext, table_rows, regimes, published_table, filename: str,
                  intro: str = "", scaling=lambda regime: DEFAULT_LR_SCALING,
                  extra=()) -> Artifact:
    """Measured test accuracy per (row, regime), the published value in the cell where the
    paper has the same (dataset, network), then the whole published table."""
    header = ["dataset", "network (trained)"] + [REGIME_LABELS[r] for r in regimes]
    summary = []
    measured_rows = [_measured_row(context, row, regimes, published_table.get(row, {}),
                                   scaling, summary) for row in table_rows]
    published_rows = [[dataset, model] + [format_published(values.get(r)) for r in regimes]
                      for (dataset, model), values in published_table.items()]
    path = write_page(context, filename, [
        f"{intro} {_batch_settings(context)} Test accuracy (%); the paper reports "
        "'validation accuracy' (the test set for CIFAR).", markdown_table(header, measured_rows),
        "Published (paper 002):", markdown_table(["dataset", "network"] + header[2:],
                                                 published_rows), *extra])
    return table_artifact(context, path, header, "; ".join(summary))


# ------------------------------------------------------------------------------ table 1

TABLE1_REGIMES = (RegimeName.SB, RegimeName.LB_GBN, RegimeName.TRACE, RegimeName.DIAG_F)


def _table1_runs(scale: Scale) -> list[Run]:
    return [run_002(scale, row, regime) for row in
            rows(scale, published.TABLE1_002, SMALL_TABLE1_ROWS) for regime in TABLE1_REGIMES]


def _table1_report(context: ReportContext):
    table_rows = rows(context.scale, published.TABLE1_002, SMALL_TABLE1_ROWS)
    extra = searched_sections(context, table_rows, TABLE1_REGIMES) if any(
        r.search_once for r in context.runs) else ()
    return _regime_table(context, table_rows, TABLE1_REGIMES, published.TABLE1_002,
                         "p002_table1.md", intro="Paper: M_L = 4096, M_S = 128, ghost BN 128, "
                         "linear LR scaling with warm-up, noise until epoch 50 of 200.",
                         extra=extra)


# ------------------------------------------------------------------------------ table 2

TABLE2_REGIMES = (RegimeName.SB, RegimeName.BATCH_CHANGE, RegimeName.MULTIPLICATIVE,
                  RegimeName.KFAC, RegimeName.DIAG_F)


def _table2_runs(scale: Scale) -> list[Run]:
    return [run_002(scale, row, regime) for row in
            rows(scale, published.TABLE2_002, SMALL_CIFAR_STAND_IN) for regime in TABLE2_REGIMES]


def _table2_report(context: ReportContext):
    table_rows = rows(context.scale, published.TABLE2_002, SMALL_CIFAR_STAND_IN)
    return _regime_table(context, table_rows, TABLE2_REGIMES, published.TABLE2_002,
                         "p002_table2.md", intro="BatchChange: small batch for the first "
                         "quarter of training, then large; Multiplicative: gradient × (1 + "
                         "N(0, 0.1²)); K-FAC: noise with covariance A ⊗ G.")


# ------------------------------------------------------------------------------ table 3

TABLE3_REGIMES = (RegimeName.SB, RegimeName.LB_GBN, RegimeName.DIAG_F)


def _table3_scaling(regime: str) -> str:
    """Square-root scaling for the large-batch regimes (SB is table 1's run)."""
    return DEFAULT_LR_SCALING if regime == RegimeName.SB else LearningRateScaling.SQRT


def _table3_runs(scale: Scale) -> list[Run]:
    return [run_002(scale, row, regime, lr_scaling=_table3_scaling(regime))
            for row in rows(scale, published.TABLE3_002, SMALL_CIFAR_STAND_IN)
            for regime in TABLE3_REGIMES]


def _table3_report(context: ReportContext):
    table_rows = rows(context.scale, published.TABLE3_002, SMALL_CIFAR_STAND_IN)
    return _regime_table(context, table_rows, TABLE3_REGIMES, published.TABLE3_002,
                         "p002_table3.md", intro="Large-batch regimes with square-root "
                         "learning-rate scaling η = η₀·√(M_L/M_S) (warm-up as in table 1).",
                         scaling=_table3_scaling)


TABLE1 = Experiment(
    "p002_table1", "002", "Table 1",
    "Accuracy of SB, LB+GBN, LB+GBN+trace noise and LB+GBN+diagonal Fisher noise "
    "(§4.3).", _table1_runs, _table1_report, scales=SCALES)
TABLE2 = Experiment(
    "p002_table2", "002", "Table 2",
    "Accuracy of BatchChange, Multiplicative and K-FAC noise beside SB and Diag-F "
    "(appendix E).", _table2_runs, _table2_report)
TABLE3 = Experiment(
    "p002_table3", "002", "Table 3",
    "LB+GBN and Diag-F+GBN with square-root learning-rate scaling (appendix E).",
    _table3_runs, _table3_report)
