"""What we measure: the mechanism diagnostics of the two seed papers.

Pure functions of (model, batch) — each docstring gives its equation, source and cost — and
Keras callbacks that run them after every epoch::

    callbacks = tfwd.diagnostics.build_callbacks(
        ["effective_lr", "jacobian_norm"], train_batch=(x, y), test_batch=(x_test, y_test),
        log_dir=log_dir, seed=0)
    model.fit(..., callbacks=callbacks)
    callbacks[0].history   # {completed epoch: {layer: η/‖w‖²}}

The callbacks (``DiagnosticCallback``) implement ``tfwd.train.RecordedCallback``, the interface
through which ``tfwd.train.train`` writes each history to results.json under
``diagnostics.<name>`` and restores it on resume; a callback of your own is recorded the same
way when it subclasses ``RecordedCallback``.

Modules: ``effective_lr`` and ``norm_transfer`` (paper 000 §4.1, figs. 3-4), ``jacobian``,
``gauss_newton`` and ``generalization`` (§4.2, lemmas 1-2, theorem 1, fig. 5, table 2),
``effective_damping`` (§4.3, fig. 7), ``fisher_norms``, ``gradient_variance``, ``folding``,
``temperature`` and ``hessian`` (paper 002 §4, fig. 3); ``layers`` finds batch-normalized
layers; ``registry`` holds the names and ``build_callbacks``.
"""
from tfwd.diagnostics.callback import DiagnosticCallback
from tfwd.diagnostics.common import UndefinedDiagnostic
from tfwd.diagnostics.effective_damping import (
    effective_damping,
    effective_damping_report,
    normalized_curvature_norms,
)
from tfwd.diagnostics.effective_lr import effective_learning_rates, weight_norms
from tfwd.diagnostics.fisher_norms import (
    FisherNorms,
    empirical_fisher_norms,
    empirical_fisher_norms_estimate,
    empirical_fisher_norms_exact,
)
from tfwd.diagnostics.folding import fold_batch_norm
from tfwd.diagnostics.gauss_newton import (
    gauss_newton_norm,
    kfac_gauss_newton_norms,
    parameter_output_jvp,
)
from tfwd.diagnostics.generalization import generalization_gap
from tfwd.diagnostics.gradient_variance import gradient_variance
from tfwd.diagnostics.hessian import (
    calibrated_hessian_eigenvalue,
    hessian_eigenvalue_report,
    hessian_vector_product,
    largest_hessian_eigenvalue,
)
from tfwd.diagnostics.jacobian import (
    JacobianNorm,
    input_jacobians,
    jacobian_norm,
    jacobian_squared_norms,
    projected_jacobian_squared_norms,
)
from tfwd.diagnostics.layers import (
    NormalizedLayer,
    batch_normalized_layers,
    rescale_normalized_layer,
    select_layers,
)
from tfwd.diagnostics.norm_transfer import WeightNormTransfer, load_norm_history
from tfwd.diagnostics.registry import DIAGNOSTICS, build_callbacks
from tfwd.diagnostics.run import diagnostic_callbacks, train_with_diagnostics
from tfwd.diagnostics.temperature import fit_temperature

__all__ = [
    "DIAGNOSTICS", "DiagnosticCallback", "FisherNorms", "UndefinedDiagnostic", "JacobianNorm", "NormalizedLayer",
    "WeightNormTransfer", "batch_normalized_layers", "build_callbacks",
    "calibrated_hessian_eigenvalue", "diagnostic_callbacks", "effective_damping", "effective_damping_report",
    "effective_learning_rates", "empirical_fisher_norms", "empirical_fisher_norms_estimate",
    "empirical_fisher_norms_exact", "fit_temperature", "fold_batch_norm", "gauss_newton_norm",
    "generalization_gap", "gradient_variance", "hessian_eigenvalue_report",
    "hessian_vector_product", "input_jacobians",
    "jacobian_norm", "jacobian_squared_norms", "kfac_gauss_newton_norms",
    "largest_hessian_eigenvalue", "load_norm_history", "normalized_curvature_norms",
    "parameter_output_jvp", "projected_jacobian_squared_norms", "rescale_normalized_layer",
    "select_layers", "train_with_diagnostics", "weight_norms",
]
