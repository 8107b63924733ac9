"""The curvature-block interface: one block per layer, the unit K-FAC preconditions.

A block covers the trainable variables θ of one layer. Its curvature matrix C approximates
that layer's diagonal block of the Gauss-Newton / Fisher matrix E[∇θℓ ∇θℓᵀ] (the expectation
over the output vectors u of ``tfwd.curvature.statistics``, per-example gradients without the
1/B of the mean loss). Every block does the same six things:

1. ``variables``: the layer variables it covers; θ = concat(v.ravel() for v in variables)
   (row-major) is the vector ``to_dense`` is written in.
2. ``forward``: runs the layer's linear (or affine) part while a ``LayerCapture`` is active,
   returning the layer output and a ``Record`` of its inputs a and its pre-activations s;
   the step back-propagates to s, so g = ∂ℓ/∂s is available per example.
3. ``input_statistics(record)`` and ``output_statistics(record, g)``: this batch's
   statistics, in ``factor_specs`` order (input statistics first). The output statistics are
   linear in g gᵀ and the step sums them over the output vectors u with their weights.
4. ``factor_specs``/``inverse_specs``: the state it holds, ``factors`` (moving averages of
   the statistics) and ``inverses`` (their damped inverses); the optimizer creates these
   variables from the specs (so a reloaded optimizer can rebuild them) and binds them.
5. ``damped_inverses(factors, damping)`` (with ``inverse_cost``, its FLOP estimate, for
   scheduling inverses across replicas) and ``precondition(gradients, inverses)`` = C_λ⁻¹ ∇θ.
6. ``to_dense(factors)``: C as a [dim θ, dim θ] matrix, for tests against brute force.

Blocks are registered for Keras layer classes in ``tfwd.curvature.registry``.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfwd.choices import kfac as defaults
from tfwd.choices.kfac import ScaleShift, WeightSharing
from tfwd.curvature.inverse import check_inverse_method


class UnsupportedLayerError(ValueError):
    """Raised when a layer asked for curvature cannot be handled."""


@dataclasses.dataclass
class Record:
    """What one forward pass saw at one layer."""

    inputs: tf.Tensor  # a: the layer input
    preactivations: tf.Tensor  # s: the block's output, before any activation
    # ∂ℓ_b/∂s_b per example (no 1/B) of the training loss, when the step could read it off its
    # own backward pass (tfwd.curvature.step); None otherwise.
    example_gradients: tf.Tensor | None = None
    # Anything else a block's statistics need from the forward pass (e.g. the normalized x̂).
    extras: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StateSpec:
    """One state variable of a block: a factor or an inverse."""

    label: str  # e.g. "A", "G_inverse": the variable is named "<layer>_<label>"
    shape: tuple
    initializer: str = "zeros"  # "zeros", "ones" or "identity" (batched over leading axes)


@dataclasses.dataclass(frozen=True)
class BlockOptions:
    """The approximation choices a user makes for all blocks of one optimizer.

    weight_sharing: "expand" or "reduce" (Eschenhagen et al., NeurIPS 2023, §3), for layers
      applied at several positions per example (Dense/EinsumDense on [B, T, …], convolutions).
    scale_shift: "per_channel" (the full 2×2 curvature of (γ_c, β_c) per channel) or
      "diagonal", for BatchNormalization / LayerNormalization.
    inverse: "cholesky" or "eigh", how the Kronecker blocks (Dense, EinsumDense, Conv1D/2D,
      DepthwiseConv2D, Embedding's G) invert their π-damped factors
      (``tfwd.curvature.inverse``). None of them needs eigenvalues, so "cholesky" is the
      default; the scale-and-shift blocks invert their per-channel 2×2 (or diagonal) matrices
      directly either way.
    """

    weight_sharing: str = defaults.WEIGHT_SHARING
    scale_shift: str = defaults.SCALE_SHIFT
    inverse: str = defaults.INVERSE

    def __post_init__(self):
        WeightSharing.check(self.weight_sharing, "weight_sharing")
        ScaleShift.check(self.scale_shift, "scale_shift")
        check_inverse_method(self.inverse)


def curvature_dtype(variable_dtype) -> tf.DType:
    """float64 for float64 variables, else float32 (mixed policies keep curvature in float32)."""
    return tf.float64 if tf.as_dtype(variable_dtype) == tf.float64 else tf.float32


def initial_value(spec: StateSpec, dtype) -> tf.Tensor:
    if spec.initializer == "identity":
        size = spec.shape[-1]
        return tf.broadcast_to(tf.eye(size, dtype=dtype), spec.shape)
    if spec.initializer == "ones":
        return tf.ones(spec.shape, dtype)
    return tf.zeros(spec.shape, dtype)


class CurvatureBlock:
    """Base of every block: the state it holds and the interface above (subclasses fill it)."""

    def __init__(self, layer, options: BlockOptions):
        self.check(layer)
        self.layer = layer
        # Records and state are keyed by it; ``registry.split_blocks`` replaces a name that
        # several layers of the model share (MultiHeadAttention's sublayers are all "query",
        # …) by the layer's path, e.g. "attention_1/query".
        self.name = layer.name
        self.options = options
        self.factors: list = []  # optimizer variables, in factor_specs order
        self.inverses: list = []  # optimizer variables, in inverse_specs order

    # -- what subclasses define
    @classmethod
    def check(cls, layer) -> None:
        """Raise UnsupportedLayerError (naming the layer and the reason) if not handled."""

    @property
    def variables(self) -> list:
        raise NotImplementedError

    def forward(self, inputs, *args, **kwargs):
        """(layer output, Record(a, s)) with the layer's own math."""
        raise NotImplementedError

    def factor_specs(self) -> list[StateSpec]:
        raise NotImplementedError

    def inverse_specs(self) -> list[StateSpec]:
        raise NotImplementedError

    def input_statistics(self, record: Record) -> list[tf.Tensor]:
        raise NotImplementedError

    def output_statistics(self, record: Record, output_gradients: tf.Tensor) -> list[tf.Tensor]:
        raise NotImplementedError

    def damped_inverses(self, factors, damping) -> list[tf.Tensor]:
        raise NotImplementedError

    def inverse_cost(self) -> int:
        """Estimated FLOPs of ``damped_inverses``."""
        raise NotImplementedError

    def precondition(self, gradients, inverses) -> list:
        raise NotImplementedError

    def to_dense(self, factors) -> tf.Tensor:
        raise NotImplementedError

    # -- shared
    @property
    def dtype(self) -> tf.DType:
        """The dtype of the block's statistics, factors and inverses."""
        return curvature_dtype(self.variables[0].dtype)

    def statistics(self, record: Record, weighted_output_gradients) -> list[tf.Tensor]:
        """This batch's statistics: input ones, then Σ_u w_u · output ones of g_u = J_sᵀu."""
        totals = None
        for gradients, weight in weighted_output_gradients:
            values = self.output_statistics(record, gradients)
            values = [weight * v for v in values]
            totals = values if totals is None else [t + v for t, v in zip(totals, values)]
        return self.input_statistics(record) + totals

    def cast(self, tensor: tf.Tensor) -> tf.Tensor:
        return tf.cast(tensor, self.dtype)
