"""The diagnostics by name, and ``build_callbacks`` for the train loop.

Each name is also the key of its history in results.json (``diagnostics.<name>``). A history
maps the completed-epoch count to the value below (ℓ = softmax cross-entropy, all measured in
inference mode on the fixed sample batches given to ``build_callbacks``):

===========================  =================================================================
name                         value per epoch
===========================  =================================================================
``effective_lr``             {BN layer: η/‖w‖²} (paper 000 fig. 3)
``weight_norms``             {Dense/Conv2D layer: ‖w‖_F of the kernel} (fig. 4 reference norms)
``jacobian_norm``            {"jacobian_norm": sqrt(E_x‖J_x‖²_F), "mean_squared": E_x‖J_x‖²_F,
                             "standard_error": of mean_squared} (fig. 5, table 2)
``gauss_newton_norm``        θᵀGθ = E_x‖J_θθ‖², identity output Hessian (fig. 5)
``kfac_gauss_newton_norm``   {"total": Σ_l tr(W̃ᵀAW̃G), "layers": {layer: ...}} (lemma 2, fig. 5)
``generalization_gap``       {"train_loss", "test_loss", "gap" = test − train} (fig. 5)
``fisher_norms``             {"full": ‖F‖_F, "diagonal": ‖diag F‖_F, "full_standard_error"},
                             empirical Fisher (paper 002 fig. 3a)
``effective_damping``        {BN layer: {"weight_norm", "effective_damping": λ‖w‖²,
                             "fisher_norm": ‖F_ŵ‖_F, "gauss_newton_norm": ‖G_ŵ‖_F}} (fig. 7)
``gradient_variance``        {layer: mean_p Var_minibatches[∂L/∂θ_p]} (paper 002 fig. 3b)
``hessian_eigenvalue``       {"eigenvalue": λ_max of the Hessian after BN folding and a
                             temperature fit on the whole test batch, "temperature": T,
                             "relative_change": of the last power iteration} (paper 002
                             fig. 3d); {"undefined": reason} when no temperature fits
===========================  =================================================================
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping, Sequence, Union

import numpy as np

from tfwd.choices import kfac
from tfwd.choices.diagnostics import SAMPLE_SIZE, Diagnostic
from tfwd.diagnostics.callback import DiagnosticCallback
from tfwd.diagnostics.common import as_batch, batch_size
from tfwd.diagnostics.effective_damping import effective_damping_report
from tfwd.diagnostics.effective_lr import effective_learning_rates, weight_norms
from tfwd.diagnostics.fisher_norms import empirical_fisher_norms
from tfwd.diagnostics.gauss_newton import gauss_newton_norm, kfac_gauss_newton_norms
from tfwd.diagnostics.generalization import generalization_gap
from tfwd.diagnostics.gradient_variance import gradient_variance
from tfwd.diagnostics.hessian import calibrated_hessian_eigenvalue
from tfwd.diagnostics.jacobian import jacobian_norm
from tfwd.diagnostics.layers import require_normalized_layers

NEEDS_TEST_BATCH = (Diagnostic.GENERALIZATION_GAP, Diagnostic.HESSIAN_EIGENVALUE)
# "auto" switches from exact to stochastic above this many floats held at once.
EXACT_BUDGET_FLOATS = 2**24
AUTO_PROJECTIONS = 16
AUTO_COLUMNS = 16


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a diagnostic may need besides the model (``build_callbacks`` fills it).

    Attributes:
      train_batch: the fixed (x, y) training sample every diagnostic is measured on.
      test_batch: the fixed held-out (x, y) sample of generalization_gap (or None).
      temperature_batch: the whole held-out batch hessian_eigenvalue fits its temperature on.
      seed: the run seed.
      damping: Tikhonov damping λ of K-FAC (effective_damping).
      jacobian_projections: None = exact (``batch_jacobian``), an int S ≥ 2 = random
        projections, "auto" = exact when B·D·K ≤ 2**24 floats, else 16 projections.
      fisher_columns: None = exact (Gram of all per-example gradients), an int m = m norm-weighted
        Gram columns, "auto" = exact when B·|θ| ≤ 2**24 floats, else 16 columns.
      gradient_variance_batch_size: mini-batch size M (None: B // 8 of the sample).
      gradient_variance_batches: number of mini-batches K.
      hessian_iterations: maximum power iterations.
      curvature_norm: "frobenius" or "spectral" norm of the normalized-weight curvature.
    """

    train_batch: tuple
    test_batch: tuple | None
    temperature_batch: tuple | None
    seed: int
    damping: float
    jacobian_projections: Union[int, str, None]
    fisher_columns: Union[int, str, None]
    gradient_variance_batch_size: int | None
    gradient_variance_batches: int
    hessian_iterations: int
    curvature_norm: str


def _requires_batch_norm(name: str) -> Callable:
    def check(model) -> None:
        require_normalized_layers(model, name)

    return check


def _jacobian_projections(settings: Settings, model) -> int | None:
    choice = settings.jacobian_projections
    if choice != "auto":
        return choice
    x = settings.train_batch[0]
    num_outputs = int(model(x[:1], training=False).shape[-1])
    floats = batch_size(x) * int(np.prod(x.shape[1:])) * num_outputs
    return None if floats <= EXACT_BUDGET_FLOATS else AUTO_PROJECTIONS


def _fisher_columns(settings: Settings, model) -> int | None:
    choice = settings.fisher_columns
    if choice != "auto":
        return choice
    count = batch_size(settings.train_batch[0])
    return None if count * model.count_params() <= EXACT_BUDGET_FLOATS else min(AUTO_COLUMNS, count)


def _current_damping(model, configured: float) -> float:
    """λ as K-FAC uses it now: its adapted value under ``adaptive_damping``, else the
    configured one."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    variable = getattr(optimizer, "damping_variable", None)
    return configured if variable is None else float(variable.numpy())


def _fisher_chunk(model) -> int:
    return max(1, EXACT_BUDGET_FLOATS // max(1, model.count_params()))


def _gradient_variance(s: Settings, seed: int) -> Callable:
    x, y = s.train_batch
    minibatch = s.gradient_variance_batch_size or max(1, batch_size(x) // 8)
    return lambda model: gradient_variance(
        model, x, y, minibatch_size=minibatch, num_batches=s.gradient_variance_batches, seed=seed
    )


# name -> (settings, seed) -> (model -> value). The order is the order of DIAGNOSTICS.
_MEASURES: dict[str, Callable] = {
    Diagnostic.EFFECTIVE_LR: lambda s, seed: effective_learning_rates,
    Diagnostic.WEIGHT_NORMS: lambda s, seed: weight_norms,
    Diagnostic.JACOBIAN_NORM: lambda s, seed: lambda model: jacobian_norm(
        model, s.train_batch[0], _jacobian_projections(s, model), seed=seed
    ).as_dict(),
    Diagnostic.GAUSS_NEWTON_NORM: lambda s, seed: lambda model: gauss_newton_norm(
        model, s.train_batch[0]
    ),
    Diagnostic.KFAC_GAUSS_NEWTON_NORM: lambda s, seed: lambda model: kfac_gauss_newton_norms(
        model, s.train_batch[0]
    ),
    Diagnostic.GENERALIZATION_GAP: lambda s, seed: lambda model: generalization_gap(
        model, s.train_batch, s.test_batch
    ),
    Diagnostic.FISHER_NORMS: lambda s, seed: lambda model: empirical_fisher_norms(
        model, *s.train_batch, _fisher_columns(s, model), seed=seed,
        chunk_size=_fisher_chunk(model),
    ).as_dict(),
    Diagnostic.EFFECTIVE_DAMPING: lambda s, seed: lambda model: effective_damping_report(
        model, s.train_batch[0], _current_damping(model, s.damping), seed=seed,
        norm=s.curvature_norm
    ),
    Diagnostic.GRADIENT_VARIANCE: _gradient_variance,
    Diagnostic.HESSIAN_EIGENVALUE: lambda s, seed: lambda model: calibrated_hessian_eigenvalue(
        model, s.train_batch, s.temperature_batch, num_iterations=s.hessian_iterations, seed=seed
    ),
}
DIAGNOSTICS = tuple(_MEASURES)
_CHECKS = {name: _requires_batch_norm(name)
           for name in (Diagnostic.EFFECTIVE_LR, Diagnostic.EFFECTIVE_DAMPING)}


def stream_seed(seed: int, name: str) -> int:
    """An independent seed for diagnostic ``name`` of a run with ``seed`` (STYLE rule 10)."""
    return int(np.random.SeedSequence([seed, DIAGNOSTICS.index(name)]).generate_state(1)[0])


def _take(batch, count: int | None):
    x, y = as_batch(batch)
    if count is not None:
        x = x[:count]
        y = None if y is None else y[:count]
    return x, y


def _check_request(names: Sequence[str], test_batch, curvature_norm: str) -> None:
    """Raise ValueError, naming the fix, for what ``build_callbacks`` cannot build."""
    unknown = [name for name in names if name not in DIAGNOSTICS]
    if unknown:
        raise ValueError(f"Unknown diagnostics {unknown}; valid names: {list(DIAGNOSTICS)}.")
    missing_test = [name for name in names if name in NEEDS_TEST_BATCH]
    if missing_test and test_batch is None:
        raise ValueError(f"Diagnostics {missing_test} need a held-out test_batch=(x, y).")
    if curvature_norm not in ("frobenius", "spectral"):
        raise ValueError(
            f"curvature_norm must be 'frobenius' or 'spectral', got {curvature_norm!r}."
        )


def _diagnostic_callback(name: str, settings: Settings, *, log_dir: str | None,
                         every_epochs: Union[int, Mapping[str, int]], total_epochs: int | None,
                         json_dir: str | None) -> DiagnosticCallback:
    """The callback of diagnostic ``name`` (arguments as in ``build_callbacks``)."""
    every = every_epochs.get(name, 1) if isinstance(every_epochs, Mapping) else every_epochs
    return DiagnosticCallback(
        name,
        _MEASURES[name](settings, stream_seed(settings.seed, name)),
        check=_CHECKS.get(name),
        log_dir=log_dir,
        every_epochs=every,
        total_epochs=total_epochs,
        json_path=None if json_dir is None else os.path.join(json_dir, f"{name}.json"),
    )


def build_callbacks(
    names: Sequence[str],
    *,
    train_batch,
    test_batch=None,
    log_dir: str | None = None,
    seed: int = 0,
    damping: float = kfac.DAMPING,
    sample_size: int | None = SAMPLE_SIZE,
    every_epochs: Union[int, Mapping[str, int]] = 1,
    total_epochs: int | None = None,
    json_dir: str | None = None,
    jacobian_projections: Union[int, str, None] = "auto",
    fisher_columns: Union[int, str, None] = "auto",
    gradient_variance_batch_size: int | None = None,
    gradient_variance_batches: int = 16,
    hessian_iterations: int = 20,
    curvature_norm: str = "frobenius",
) -> list[DiagnosticCallback]:
    """One ``DiagnosticCallback`` per name, in the given order (module table for the values).

    Args:
      names: diagnostics from ``DIAGNOSTICS``.
      train_batch: fixed (x, y) training sample every diagnostic is measured on.
      test_batch: fixed (x, y) held-out sample: its first ``sample_size`` examples for
        generalization_gap, all of it for the temperature fit of hessian_eigenvalue (which
        needs misclassified examples: pass the whole test set, as paper 002 does).
      log_dir: TensorBoard directory; scalars go to ``<log_dir>/diagnostics``.
      seed: run seed; each diagnostic derives its own stream (``stream_seed``) and reuses it
        every epoch (common random numbers make epochs comparable).
      sample_size: use only the first ``sample_size`` examples of each batch (None: all).
      every_epochs: measure every this many epochs, one int or {name: int}.
      total_epochs: the run's last epoch, always measured (with ``every_epochs`` > 1).
      json_dir: if given, each history is also written to ``<json_dir>/<name>.json``.
      damping, jacobian_projections, fisher_columns, gradient_variance_batch_size,
      gradient_variance_batches, hessian_iterations, curvature_norm: the estimators' settings,
        each described on ``Settings``.

    Raises:
      ValueError: an unknown name (the message lists ``DIAGNOSTICS``), a missing test batch
        or an unknown curvature_norm.
    """
    _check_request(names, test_batch, curvature_norm)
    settings = Settings(
        train_batch=_take(train_batch, sample_size),
        test_batch=None if test_batch is None else _take(test_batch, sample_size),
        temperature_batch=None if test_batch is None else _take(test_batch, None),
        seed=seed, damping=damping, jacobian_projections=jacobian_projections,
        fisher_columns=fisher_columns, gradient_variance_batch_size=gradient_variance_batch_size,
        gradient_variance_batches=gradient_variance_batches,
        hessian_iterations=hessian_iterations, curvature_norm=curvature_norm,
    )
    return [_diagnostic_callback(name, settings, log_dir=log_dir, every_epochs=every_epochs,
                                 total_epochs=total_epochs, json_dir=json_dir) for name in names]
