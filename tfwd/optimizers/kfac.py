"""K-FAC with Fisher (KFAC-F) or Gauss-Newton (KFAC-G) curvature, L2 or decoupled decay.

Update at step k (Martens & Grosse 2015; paper 000 §3 and docs/equations.md §4), per covered layer
with gradient ∇W̃ (kernel and bias as one matrix) and factors A, G:

    g̃      = ∇W̃ + γW̃                              (decay_type="l2" only, on the decay group)
    P       = A_λ⁻¹ · g̃ · G_λ⁻¹                      (tfwd.curvature.inverse: π-split damping λ)
    ν       = min(1, sqrt(c / (η² Σ g̃ᵀP)))          (KL clipping, if kl_clip=c is set)
    v       ← μ v + ν P                               (momentum μ)
    θ       ← θ − η v  −  η γ θ                       (the last term for decay_type="decoupled")

Each covered layer is one curvature block (``tfwd.curvature.block``; the registry
``tfwd.curvature.registry`` says which layer gets which block): Kronecker blocks
(Dense of any input rank, EinsumDense, Conv1D, Conv2D, DepthwiseConv2D per channel, Embedding
with a diagonal A) precondition as above; the scale-and-shift block of BatchNormalization /
LayerNormalization as P_c = (F_c + λI)⁻¹ g̃_c per channel. Variables of layers without a block
use P = g̃, i.e. SGD with momentum under the same decay rule. The factors are exponential
moving averages (decay ``cov_decay``; the first updates average uniformly) of the statistics
recomputed every ``cov_every`` steps and all-reduced (mean) across replicas on those steps
only, so 2 replicas at global batch B see the factors of one replica at batch B and an
ordinary step all-reduces exactly what an SGD step does (the gradients); a non-finite factor
stops the statistics step that makes or meets it, naming the layer. The damped inverses
are recomputed every ``inv_every`` steps, by Cholesky (default) or eigh (``inverse``,
``tfwd.curvature.inverse``); with R > 1 replicas each replica computes those of its share of
the blocks and an all-reduce shares them (``tfwd.optimizers.sharding``). Dense blocks may
compute P = (A_λ⁻¹Ãᵀ)(ĜG_λ⁻¹) from the gradient's per-example factors instead (``low_rank``,
``tfwd.curvature.low_rank``; exact), and Σ g̃ᵀP from two N × N products, so the step never
forms their dense ∇W̃ and ν·P = (ν·A_λ⁻¹Ãᵀ)(ĜG_λ⁻¹).
Factors, inverses and preconditioning are float32 under mixed-precision policies (float64
with float64 variables).
The authors' settings: cov_decay 0.95, cov_every 10, inv_every 100, damping 1e-3, momentum
0.9, KL clip 1e-4 (G) / 1e-5 (F) without batch norm. With ``adaptive_damping`` the damping λ
is a state variable adapted by the Levenberg–Marquardt rule of Martens & Grosse (2015) §6.5
(``tfwd.optimizers.damping``; ``tfwd.train.TrainStep`` measures the reduction ratio).

Usage with Keras::

    opt = tfwd.optimizers.KFAC(learning_rate=0.03, curvature="gauss_newton", weight_decay=3e-2)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    opt.attach(model)                      # registers the blocks, builds the state
    tfwd.train.TrainStep(model).install()  # the step that feeds K-FAC its statistics
    model.fit(...)

After ``keras.models.load_model``, call ``model.optimizer.attach(model)`` and install the step
again; the factors, inverses and momentum are restored from the file.
"""
from __future__ import annotations

import warnings
import weakref

import keras
import tensorflow as tf
from tensorflow.python.distribute import values as distribute_values

from tfwd.choices import decay as decay_defaults
from tfwd.choices import kfac as defaults
from tfwd.choices.kfac import LowRankMode
from tfwd.choices.models import TOP_LAYER
from tfwd.choices.optimizers import MOMENTUM
from tfwd.curvature.block import BlockOptions, StateSpec, initial_value
from tfwd.curvature.capture import LayerCapture
from tfwd.curvature.embedding import deduplicated
from tfwd.curvature.finite import check_finite
from tfwd.curvature.inverse import inner_product, kl_clip_scale_of_products
from tfwd.curvature.low_rank import check_low_rank_mode, prefers_low_rank
from tfwd.curvature.preconditions import check_loss, check_outputs_logits
from tfwd.curvature.registry import split_blocks
from tfwd.curvature.statistics import block_statistics, check_curvature
from tfwd.optimizers.damping import DampingAdaptation, adapted_damping, reduction_ratio
from tfwd.optimizers.decay import DecayGroupOrPredicate, WeightDecay
from tfwd.optimizers.sharding import shards_inverses, update_shared_inverses


def _specs_to_config(factor_specs, inverse_specs, dtype) -> dict:
    return {"dtype": tf.as_dtype(dtype).name,
            "factors": [[s.label, list(s.shape), s.initializer] for s in factor_specs],
            "inverses": [[s.label, list(s.shape), s.initializer] for s in inverse_specs]}


def _graph_chain(graph):
    while graph is not None:
        yield graph
        graph = getattr(graph, "outer_graph", None)


def _nonfinite_factors_message(layer_name: str) -> str:
    # tfwd.train.divergence recognises this text and records the run as diverged.
    return (f"K-FAC factors of layer {layer_name!r} are not finite: training diverged. Lower "
            "the learning rate, raise damping or set kl_clip")


def _formed(pair):
    """(directions, Σ g̃ᵀP) from a block's (scaled, Σ g̃ᵀP): its P as tensors."""
    scaled, product = pair
    return scaled(None), product


def _check_arguments(*, curvature, low_rank, damping, momentum, cov_decay, cov_every,
                     inv_every, kl_clip, gauss_newton_samples) -> None:
    """Raise ValueError naming the first of ``KFAC``'s arguments that is out of its range."""
    check_curvature(curvature)
    check_low_rank_mode(low_rank)
    if damping <= 0:
        raise ValueError(f"damping must be > 0, got {damping!r}.")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
    if not 0 <= cov_decay < 1:
        raise ValueError(f"cov_decay must be in [0, 1), got {cov_decay!r}.")
    if cov_every < 1 or inv_every < 1:
        raise ValueError("cov_every and inv_every must be >= 1.")
    if kl_clip is not None and kl_clip <= 0:
        raise ValueError(f"kl_clip must be > 0 or None, got {kl_clip!r}.")
    if gauss_newton_samples is not None and gauss_newton_samples < 1:
        raise ValueError("gauss_newton_samples must be >= 1 or None (exact).")


def _scaled(scale, direction):
    """scale·direction (``scale`` None: the direction itself)."""
    if scale is None:
        return direction
    if isinstance(direction, tf.IndexedSlices):
        return tf.IndexedSlices(tf.cast(scale, direction.values.dtype) * direction.values,
                                direction.indices, direction.dense_shape)
    return tf.cast(scale, direction.dtype) * direction


@keras.saving.register_keras_serializable(package="tfwd")
class KFAC(keras.optimizers.Optimizer):
    """K-FAC for Keras 3 (see the module docstring for the update).

    Args:
      learning_rate: η (float or schedule).
      curvature: ``"gauss_newton"`` (KFAC-G), ``"fisher"`` (KFAC-F) or ``"empirical"``.
      damping: λ, Tikhonov damping split between the factors by π.
      momentum: μ.
      cov_decay: moving-average decay of the factors.
      cov_every: recompute statistics every this many steps.
      inv_every: recompute damped inverses every this many steps.
      kl_clip: c of KL clipping, or None to disable.
      weight_decay, decay_type, decay_group, top_layer: the shared decay rule
        (``tfwd.optimizers.decay``).
      gauss_newton_samples: Rademacher vectors per statistics step for KFAC-G; None = exact
        over all outputs (one backward pass per class).
      seed: seed of the Fisher target / Rademacher sampling (stateless, per step).
      weight_sharing: ``"expand"`` or ``"reduce"`` for layers applied at several positions
        (``tfwd.curvature.kronecker``).
      scale_shift: ``"per_channel"`` or ``"diagonal"`` for normalization γ/β
        (``tfwd.curvature.scale_shift``).
      shard_inverses: under MirroredStrategy / MultiWorkerMirroredStrategy with R > 1
        replicas, each replica computes the damped inverses of about 1/R of the blocks
        (greedy by ``inverse_cost``) and the results are shared by an all-reduce
        (``tfwd.optimizers.sharding``); the update is the same. False: every replica
        computes every inverse, as on one replica.
      adaptive_damping: None (fixed λ), True (the Levenberg–Marquardt rule of
        ``tfwd.optimizers.damping`` with its defaults) or its options
        (``DampingAdaptation`` or its config dict); ``damping`` is then the initial λ.
      inverse: ``"cholesky"`` (default) or ``"eigh"``, how the Kronecker blocks invert their
        damped factors (``tfwd.curvature.inverse``; same inverse up to round-off).
      low_rank: ``"auto"`` (default), ``"always"`` or ``"never"``: precondition Dense layers'
        gradients through their per-example factors (``tfwd.curvature.low_rank``) when it is
        cheaper / always / never. Used on one replica, without gradient clipping or
        accumulation, when ``tfwd.train.TrainStep`` has no consumers that change the
        gradients (the noise); the dense route otherwise (same direction up to round-off).
      layers, state: names of the covered layers and the shapes of their state; filled in by
        ``attach`` and saved in the config (a reloaded optimizer rebuilds its state from them).
    """

    def __init__(
        self,
        learning_rate=0.01,
        curvature: str = defaults.CURVATURE,
        damping: float = defaults.DAMPING,
        momentum: float = MOMENTUM,
        cov_decay: float = defaults.COV_DECAY,
        cov_every: int = defaults.COV_EVERY,
        inv_every: int = defaults.INV_EVERY,
        kl_clip: float | None = defaults.KL_CLIP,
        weight_decay: float = decay_defaults.WEIGHT_DECAY,
        decay_type: str = decay_defaults.DECAY_TYPE,
        decay_group: DecayGroupOrPredicate = decay_defaults.DECAY_GROUP,
        top_layer: str = TOP_LAYER,
        gauss_newton_samples: int | None = defaults.GAUSS_NEWTON_SAMPLES,
        seed: int = 0,
        weight_sharing: str = defaults.WEIGHT_SHARING,
        scale_shift: str = defaults.SCALE_SHIFT,
        shard_inverses: bool = defaults.SHARD_INVERSES,
        adaptive_damping: DampingAdaptation | dict | bool | None = None,
        inverse: str = defaults.INVERSE,
        low_rank: str = defaults.LOW_RANK,
        layers: list[str] | None = None,
        state: list[dict] | None = None,
        name: str = "kfac",
        **kwargs,
    ):
        decay = WeightDecay(weight_decay, decay_type, decay_group, top_layer)
        super().__init__(learning_rate=learning_rate, weight_decay=decay.keras_weight_decay,
                         name=name, **kwargs)
        self.decay = decay
        _check_arguments(curvature=curvature, low_rank=low_rank, damping=damping,
                         momentum=momentum, cov_decay=cov_decay, cov_every=cov_every,
                         inv_every=inv_every, kl_clip=kl_clip,
                         gauss_newton_samples=gauss_newton_samples)
        self.damping_adaptation = DampingAdaptation.from_value(adaptive_damping)
        if self.damping_adaptation is not None:
            self.damping_adaptation.check_initial(damping)
        self.block_options = BlockOptions(weight_sharing, scale_shift, inverse)
        self.low_rank = low_rank
        self.curvature = curvature
        self.damping = float(damping)
        self.momentum = float(momentum)
        self.cov_decay = float(cov_decay)
        self.cov_every = int(cov_every)
        self.inv_every = int(inv_every)
        self.kl_clip = None if kl_clip is None else float(kl_clip)
        self.gauss_newton_samples = gauss_newton_samples
        self.seed = int(seed)
        self.shard_inverses = bool(shard_inverses)
        self.layer_names = list(layers) if layers is not None else None
        self.state_config = list(state) if state is not None else None
        self.curvature_blocks = []  # known after attach()
        # FuncGraphs in which update_curvature ran: apply() checks that it was fed.
        self._fed_graphs = weakref.WeakSet()
        # FuncGraph -> {layer: GradientFactors} of that step (record_gradient_factors).
        self._gradient_factors = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ set-up
    def attach(self, model: keras.Model) -> "KFAC":
        """Register ``model``'s layers that have curvature blocks and build the state.

        Call once after ``compile`` (or after ``load_model``); train through
        ``tfwd.train.TrainStep``, which feeds ``update_curvature``. Raises if the model does
        not output logits or has no layer with a block; warns once listing the variables that
        get plain SGD-with-momentum updates.
        """
        check_outputs_logits(model, "K-FAC")
        check_loss(model, "K-FAC", self.curvature)
        blocks, others = split_blocks(model, self.block_options)
        if not blocks:
            raise ValueError(
                f"Model {model.name!r} has no Dense or Conv2D layer for K-FAC (nor any other "
                "layer with a curvature block; see tfwd.curvature.register_block).")
        names = [block.name for block in blocks]
        if self.layer_names is not None and self.layer_names != names:
            raise ValueError(
                f"This K-FAC optimizer covers layers {self.layer_names}, but model "
                f"{model.name!r} has {names}; attach it to the model it was built for."
            )
        state = [_specs_to_config(b.factor_specs(), b.inverse_specs(), b.dtype) for b in blocks]
        if self.state_config is not None and self.state_config != state:
            raise ValueError(
                f"This K-FAC optimizer's saved state {self.state_config} does not fit model "
                f"{model.name!r} (needs {state}); attach it to the model it was built for.")
        uncovered = [v.path for layer in others for v in layer.trainable_weights]
        if uncovered:
            warnings.warn(
                "K-FAC does not precondition these variables; they get SGD with momentum "
                f"under the same weight-decay rule: {uncovered}",
                stacklevel=2,
            )
        self.layer_names, self.state_config, self.curvature_blocks = names, state, blocks
        if not self.built:
            # Built here, under the model's strategy scope, never lazily inside a traced step.
            with model.distribute_strategy.scope():
                self.build(model.trainable_variables)
        self._bind_state()
        return self

    def build(self, variables):
        if self.built:
            return
        if self.layer_names is None or self.state_config is None:
            raise ValueError(
                "K-FAC does not know the model's layers yet: call optimizer.attach(model) "
                "before training (after compile or load_model)."
            )
        self.decay.check_group(variables)
        super().build(variables)
        self.block_factors, self.block_inverses = [], []
        for name, spec in zip(self.layer_names, self.state_config):
            for store, key in ((self.block_factors, "factors"), (self.block_inverses, "inverses")):
                store.append([self._state_variable(name, StateSpec(label, tuple(shape), init),
                                                   spec["dtype"])
                              for label, shape, init in spec[key]])
        self.statistics_updates = self.add_variable((), initializer="zeros", dtype="int64",
                                                    name="statistics_updates")
        if self.damping_adaptation is not None:  # λ and the last ρ, saved with the state
            self.damping_variable = self.add_variable(
                (), initializer=keras.initializers.Constant(self.damping), dtype="float32",
                name="damping")
            self.reduction_ratio = self.add_variable((), initializer="zeros", dtype="float32",
                                                     name="reduction_ratio")
        self.velocities = self.add_optimizer_variables(variables, "velocity")

    def _state_variable(self, layer_name, spec: StateSpec, dtype):
        return self.add_variable(spec.shape, lambda shape, dtype=None: initial_value(spec, dtype),
                                 dtype=dtype,
                                 name=f"{layer_name.replace('/', '_')}_{spec.label}")

    def _bind_state(self):
        """Give each block its factor and inverse variables (built from the saved shapes)."""
        for block, factors, inverses in zip(self.curvature_blocks, self.block_factors,
                                            self.block_inverses):
            block.factors, block.inverses = factors, inverses

    def _check_attached(self):
        if not self.curvature_blocks:
            raise ValueError("Call optimizer.attach(model) before training with K-FAC.")

    # ------------------------------------------------------------ statistics
    def _is_statistics_step(self):
        return tf.equal(self.iterations % self.cov_every, 0)

    def _is_inverse_step(self):
        return tf.equal(self.iterations % self.inv_every, 0)

    def _sampling_seed(self):
        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.iterations, tf.int64)])

    def local_statistics(self, tape, records, y_pred, y) -> list:
        """This replica's statistics, flat over blocks (``tfwd.curvature.statistics``).

        Sampling is indexed by the example's place in the global batch, so the statistics
        do not depend on how many replicas share the batch.
        """
        context = tf.distribute.get_replica_context()
        local_batch = tf.shape(y_pred)[0]
        replicas = context.num_replicas_in_sync if context is not None else 1
        replica = context.replica_id_in_sync_group if context is not None else 0
        per_block = block_statistics(
            self.curvature_blocks, records, tape, y_pred, y, self.curvature,
            self._sampling_seed(), self.gauss_newton_samples,
            example_offset=tf.cast(replica, tf.int32) * local_batch,
            total_examples=local_batch * replicas,
        )
        return [s for statistics in per_block for s in statistics]

    def _mean_over_replicas(self, strategy, flat, destinations=None):
        """The replicas' mean of ``flat``. Called from ``_merge_curvature`` inside the
        statistics-step cond, so it communicates on statistics steps only: in cross-replica
        context (a strategy's merge) it reduces the per-replica values onto the factors'
        devices; in replica context (strategies that need no merge) it is an all-reduce."""
        if tf.distribute.in_cross_replica_context():
            if strategy.num_replicas_in_sync == 1:
                return flat
            # MultiWorkerMirroredStrategy with one device per worker hands the merge plain
            # tensors, which reduce_to would take as identical on every replica.
            flat = [v if isinstance(v, tf.distribute.DistributedValues)
                    else distribute_values.PerReplica((v,)) for v in flat]
            destinations = destinations or [factor.value for factor in self._flat_factors()]
            pairs = list(zip(flat, destinations))
            return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.MEAN, pairs)
        context = tf.distribute.get_replica_context()
        if context.num_replicas_in_sync > 1:
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, flat)
        return flat

    def update_curvature(self, tape, records, y_pred, y):
        """This step's curvature update, called by the training step in replica context
        with its persistent tape, the capture's records, the logits and the labels.

        On statistics steps (every ``cov_every``) the statistics are computed and
        all-reduced (mean) and the factors updated; on inverse steps the inverses are
        refreshed. Other steps communicate nothing. Returns a tensor to take control
        dependencies on before ``apply``.
        """
        self._check_attached()
        zeros = [tf.zeros(f.shape, f.dtype) for f in self._flat_factors()]
        # The cond holds only replica-local math: the expensive part, skipped most steps.
        statistics = tf.cond(
            self._is_statistics_step(),
            lambda: self.local_statistics(tape, records, y_pred, y),
            lambda: zeros,
        )
        self._fed_graphs.add(tf.compat.v1.get_default_graph())
        return tf.__internal__.distribute.interim.maybe_merge_call(
            self._merge_curvature, self._distribution_strategy, statistics, average=False)

    # ------------------------------------------------------- low-rank gradients
    def low_rank_layers(self) -> list[str]:
        """Names of the layers whose gradients this step may precondition through their
        per-example factors (call in replica context, where the replica count is known)."""
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        # The factors describe this replica's gradient before any all-reduce, clipping or
        # accumulation changes it.
        if (self.low_rank == LowRankMode.NEVER or replicas > 1
                or self.gradient_accumulation_steps
                or any(v is not None for v in (self.clipnorm, self.clipvalue,
                                               self.global_clipnorm))):
            return []
        return [b.name for b in self.curvature_blocks if hasattr(b, "gradient_factors")]

    def record_gradient_factors(self, records) -> None:
        """Keep this step's gradient factors of ``low_rank_layers`` (from ``records`` with
        per-example gradients) for ``apply``. The training step calls it only when the
        gradients it hands to ``apply`` are those of its loss, unchanged."""
        names = set(self.low_rank_layers())
        self._gradient_factors[tf.compat.v1.get_default_graph()] = {
            block.name: block.gradient_factors(records[block.name])
            for block in self.curvature_blocks
            if block.name in names and records[block.name].example_gradients is not None}

    def _step_gradient_factors(self) -> dict:
        """This step's factors, removed from the store: its tensors refer to their graph,
        which a weak key would otherwise never release."""
        for graph in _graph_chain(tf.compat.v1.get_default_graph()):
            if graph in self._gradient_factors:
                return self._gradient_factors.pop(graph)
        return {}

    def _precondition_block(self, block, gradients, variables, gradient_factors):
        """(scaled, Σ g̃ᵀP) of one block, ``scaled(ν)`` its ν·P per variable (ν None: P):
        dense, or through its gradient factors (``low_rank``), which need the dense ∇W̃ for
        neither, so that the graph drops the tape's kernel-gradient product. Σ g̃ᵀP, KL
        clipping's term, is 0 without ``kl_clip``."""
        factors = gradient_factors.get(block.name)
        if factors is None:
            return self._dense_direction(block, gradients)
        l2_terms = [self.decay.l2_term(v) for v in variables]
        has_l2 = any(term is not None for term in l2_terms)
        l2_terms = ([tf.zeros_like(v) if t is None else t for t, v in zip(l2_terms, variables)]
                    if has_l2 else None)

        def low_rank():
            direction = block.precondition_low_rank(factors, block.inverses, l2_terms)
            return (lambda scale: block.low_rank_variables(direction, scale),
                    self._kept_product(direction.inner_product, direction.inner_product.dtype))

        choice = prefers_low_rank(self.low_rank, factors, has_l2)
        if isinstance(choice, bool):
            return low_rank() if choice else self._dense_direction(block, gradients)
        # "auto" at a batch size known only when the step runs (no L2 term: prefers_low_rank):
        # the dense branch forms ∇W̃ = ÃᵀĜ itself, since a branch that captured the tape's
        # gradient would make every step compute it. A cond returns tensors: P, formed.
        directions, product = tf.cond(
            choice, lambda: _formed(low_rank()),
            lambda: _formed(self._dense_direction(block, block.gradients_from_factors(factors))))
        return (lambda scale: [_scaled(scale, d) for d in directions]), product

    def _dense_direction(self, block, gradients):
        """(scaled, Σ g̃ᵀP) of P = A_λ⁻¹ g̃ G_λ⁻¹ (``_precondition_block``)."""
        directions = block.precondition(gradients, block.inverses)
        product = (tf.add_n([inner_product(g, p) for g, p in zip(gradients, directions)])
                   if self.kl_clip is not None else None)
        return ((lambda scale: [_scaled(scale, d) for d in directions]),
                self._kept_product(product, directions[0].dtype))

    def _kept_product(self, product, dtype):
        """Σ g̃ᵀP when KL clipping reads it, else 0 (a tf.cond branch must return a tensor)."""
        return product if self.kl_clip is not None else tf.zeros([], dtype)

    def _flat_factors(self) -> list:
        return [f for factors in self.block_factors for f in factors]

    def _merge_curvature(self, strategy, flat_stats, average):
        # Predicates are read here, in cross-replica context, from the mirrored step counter;
        # ``flat_stats`` are identical on every replica, each device updates its own copy.
        is_statistics_step = tf.constant(True) if average else self._is_statistics_step()

        def update_factors():
            mean_stats = self._mean_over_replicas(strategy, flat_stats)  # statistics steps only
            owners = [block.name for block, factors in zip(self.curvature_blocks,
                                                           self.block_factors) for _ in factors]
            for factor, value, owner in zip(self._flat_factors(), mean_stats, owners):
                count = tf.cast(self.statistics_updates, factor.dtype)
                weight = count / (count + 1.0)
                if not average:
                    weight = tf.minimum(weight, tf.cast(self.cov_decay, factor.dtype))

                def moving_average(var, new, weight=weight, owner=owner):
                    # A non-finite factor stops the statistics step that makes or meets it,
                    # not the next inverse step up to inv_every steps later; the check runs
                    # on the device (no host read).
                    average = weight * var + (1.0 - weight) * new
                    return var.assign(check_finite(average, _nonfinite_factors_message(owner)))

                strategy.extended.update(factor.value, moving_average, args=(value,), group=False)
            strategy.extended.update(
                self.statistics_updates.value, lambda var: var.assign_add(1), group=False
            )
            return tf.constant(True)

        updated = tf.cond(is_statistics_step, update_factors, lambda: tf.constant(False))
        if not average:
            with tf.control_dependencies([updated]):
                updated = tf.cond(
                    self._is_inverse_step(),
                    lambda: self._merge_inverses(strategy),
                    lambda: tf.constant(False),
                )
        return updated

    def _checked_factors(self, block, factor_values) -> list:
        message = _nonfinite_factors_message(block.name)
        return [check_finite(f, message) for f in factor_values]

    def _damped_inverses(self, block, factor_values, damping=None) -> list:
        """``block``'s damped inverses at λ = ``damping`` (None: the current λ)."""
        if damping is None:
            damping = (self.damping if self.damping_adaptation is None
                       else self.damping_variable.value)
        return block.damped_inverses(factor_values, damping)

    def _merge_inverses(self, strategy):
        """Every block's damped inverses from its factors, in cross-replica context: shared
        out across replicas (``tfwd.optimizers.sharding``) or on each device's copy."""
        if self.shard_inverses and shards_inverses(strategy):
            # The adapted λ is the same on every replica: each device reads the primary copy.
            update_shared_inverses(strategy, self.curvature_blocks, self._damped_inverses,
                                   self._checked_factors)
            return tf.constant(True)
        # The current λ goes in as an argument, so that each device reads its own copy.
        damping = [self.damping_variable.value] if self.damping_adaptation is not None else []
        for block, factors, inverses in zip(self.curvature_blocks, self.block_factors,
                                            self.block_inverses):
            def assign_inverses(*values, block=block, count=len(inverses)):
                targets, factor_values = values[:count], values[count:]
                current = self.damping if not damping else factor_values[-1]
                factor_values = factor_values[:len(factor_values) - len(damping)]
                new = self._damped_inverses(block, self._checked_factors(block, factor_values),
                                            current)
                return [target.assign(value) for target, value in zip(targets, new)]

            strategy.extended.update(
                inverses[0].value, assign_inverses,
                args=tuple(v.value for v in inverses[1:] + factors) + tuple(damping),
                group=False,
            )
        return tf.constant(True)

    # ----------------------------------------------------------- damping
    def is_damping_step(self):
        """Whether this step (read before ``apply``) measures ρ and adapts λ."""
        return tf.equal(self.iterations % self.damping_adaptation.interval, 0)

    def update_damping(self, terms):
        """After ``apply`` on a damping step, in replica context: this replica's
        [actual, predicted] (``tfwd.curvature.quadratic_model.reduction_terms``; zeros on
        other steps) are summed over replicas into ρ, and λ is adapted
        (``tfwd.optimizers.damping``) identically on every replica."""
        return tf.__internal__.distribute.interim.maybe_merge_call(
            self._merge_damping, self._distribution_strategy, terms)

    def _merge_damping(self, strategy, terms):
        replicas = strategy.num_replicas_in_sync

        def ratio_of(mean):
            total = mean * tf.cast(replicas, mean.dtype)
            return reduction_ratio(total[0], total[1])

        def adapt():
            mean, = self._mean_over_replicas(strategy, [terms], [self.reduction_ratio.value])
            # Per device (the reduced value is mirrored): ρ, then λ from the device's own λ.
            strategy.extended.update(
                self.damping_variable.value,
                lambda var, mean: var.assign(
                    adapted_damping(var.read_value(), ratio_of(mean), self.damping_adaptation)),
                args=(mean,), group=False)
            strategy.extended.update(self.reduction_ratio.value,
                                     lambda var, mean: var.assign(ratio_of(mean)),
                                     args=(mean,), group=False)
            return tf.constant(True)

        # apply() has counted this step: it was a damping step if iterations − 1 was one.
        was_damping_step = tf.equal((self.iterations - 1) % self.damping_adaptation.interval, 0)
        return tf.cond(was_damping_step, adapt, lambda: tf.constant(False))

    def refresh_inverses(self):
        """Recompute all damped inverses now (after factor initialisation)."""
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._merge_inverses, self._distribution_strategy
        )

    def initialize_factors(self, model: keras.Model, batches, num_batches: int) -> None:
        """Set the factors to their average over ``num_batches`` batches, then invert them.

        The authors initialise the factors with one pass over the training data. ``batches``
        is an iterable of (x, y) global batches; runs under ``model.distribute_strategy``.
        """
        self._check_attached()
        strategy = model.distribute_strategy

        def replica_step(x, y):
            with tf.GradientTape(persistent=True) as tape, \
                    LayerCapture(self.curvature_blocks) as capture:
                y_pred = model(x, training=False)
            statistics = self.local_statistics(tape, capture.records, y_pred, y)
            del tape
            tf.__internal__.distribute.interim.maybe_merge_call(
                self._merge_curvature, self._distribution_strategy, statistics, average=True)

        step = tf.function(lambda x, y: strategy.run(replica_step, args=(x, y)))
        dataset = strategy.experimental_distribute_dataset(batches) \
            if isinstance(batches, tf.data.Dataset) else batches
        for index, (x, y) in enumerate(dataset):
            if index >= num_batches:
                break
            step(x, y)
        tf.function(lambda: strategy.run(self.refresh_inverses))()

    # ------------------------------------------------------------------ update
    def _was_fed(self) -> bool:
        return any(graph in self._fed_graphs for graph in _graph_chain(tf.compat.v1.get_default_graph()))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._was_fed():
            raise ValueError(
                "K-FAC got gradients without this step's curvature update: train through "
                "tfwd.train.TrainStep (TrainStep(model).install() before model.fit, or its "
                "replica_step in a custom loop) after optimizer.attach(model)."
            )
        trainable_variables = [v.value if isinstance(v, keras.Variable) else v
                               for v in trainable_variables]
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, list(grads))  # as Keras
        directions = self._directions(list(grads), trainable_variables, learning_rate)
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step,
            self._distribution_strategy,
            list(zip(directions, trainable_variables)),
            learning_rate,
        )

    def _directions(self, gradients, variables, learning_rate):
        """ν·P for every variable (identical on every replica: inputs are all-reduced)."""
        index = {self._var_key(v): i for i, v in enumerate(variables)}
        gradients = [deduplicated(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        gradients = [self.decay.l2_gradient(g, v) for g, v in zip(gradients, variables)]
        gradient_factors = self._step_gradient_factors()
        blocks = []  # per block: (positions of its variables, scaled)
        products = []  # Σ g̃ᵀP's terms: one per block, one per variable no block covers
        for block in self.curvature_blocks:
            positions = [index.pop(self._var_key(v)) for v in block.variables]
            scaled, product = self._precondition_block(
                block, [gradients[i] for i in positions], [variables[i] for i in positions],
                gradient_factors)
            blocks.append((positions, scaled))
            products.append(product)
        scale = None
        if self.kl_clip is not None:
            products += [inner_product(gradients[i], gradients[i]) for i in index.values()]
            scale = kl_clip_scale_of_products(products, learning_rate, self.kl_clip)
        directions = list(gradients)
        for i in index.values():  # no block: P = g̃
            directions[i] = _scaled(scale, gradients[i])
        for positions, scaled in blocks:
            for i, direction in zip(positions, scaled(scale)):
                directions[i] = direction
        return directions

    def update_step(self, direction, variable, learning_rate):
        """v ← μv + νP;  θ ← θ − ηv (decoupled decay was applied by the base class)."""
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        if isinstance(direction, tf.IndexedSlices):  # only the rows looked up move P
            self.assign(velocity, self.momentum * velocity)
            self.assign_add(velocity, direction)
        else:
            self.assign(velocity, self.momentum * velocity + direction)
        self.assign_sub(variable, learning_rate * velocity)

    def _use_weight_decay(self, variable):
        return self.decay.applies_to(variable)

    def get_config(self):
        config = super().get_config()
        config.update(self.decay.get_config())
        config.update({
            "curvature": self.curvature,
            "damping": self.damping,
            "momentum": self.momentum,
            "cov_decay": self.cov_decay,
            "cov_every": self.cov_every,
            "inv_every": self.inv_every,
            "kl_clip": self.kl_clip,
            "gauss_newton_samples": self.gauss_newton_samples,
            "seed": self.seed,
            "weight_sharing": self.block_options.weight_sharing,
            "scale_shift": self.block_options.scale_shift,
            "shard_inverses": self.shard_inverses,
            "adaptive_damping": (None if self.damping_adaptation is None
                                 else self.damping_adaptation.get_config()),
            "inverse": self.block_options.inverse,
            "low_rank": self.low_rank,
            "layers": self.layer_names,
            "state": self.state_config,
        })
        return config
