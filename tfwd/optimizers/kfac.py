"""K-FAC with Fisher (KFAC-F) or Gauss-Newton (KFAC-G) curvature, L2 or decoupled decay.

Update at step k (Martens & Grosse 2015; paper 000 §3 and REFERENCE §3), per covered layer
with gradient ∇W̃ (kernel and bias as one matrix) and factors A, G:

    g̃      = ∇W̃ + γW̃                              (decay_type="l2" only, on the decay group)
    P       = A_λ⁻¹ · g̃ · G_λ⁻¹                      (tfwd.curvature.inverse: π-split damping λ)
    ν       = min(1, sqrt(c / (η² Σ g̃ᵀP)))          (KL clipping, if kl_clip=c is set)
    v       ← μ v + ν P                               (momentum μ)
    θ       ← θ − η v  −  η γ θ                       (the last term for decay_type="decoupled")

Variables of layers K-FAC does not cover (batch-norm γ/β, unsupported layers) use P = g̃, i.e.
SGD with momentum under the same decay rule. A and G are exponential moving averages
(decay ``cov_decay``; the first updates average uniformly) of the statistics of
``tfwd.curvature.statistics`` recomputed every ``cov_every`` steps and all-reduced (mean)
across replicas, so 2 replicas at global batch B see the factors of one replica at batch B.
The damped inverses are recomputed from an eigendecomposition every ``inv_every`` steps.
The authors' settings: cov_decay 0.95, cov_every 10, inv_every 100, damping 1e-3, momentum
0.9, KL clip 1e-4 (G) / 1e-5 (F) without batch norm.

Usage with Keras::

    opt = tfwd.optimizers.KFAC(learning_rate=0.03, curvature="gauss_newton", weight_decay=3e-2)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    opt.attach(model)        # the one extra call: registers layers, builds state, installs the step
    model.fit(...)

After ``keras.models.load_model``, call ``model.optimizer.attach(model)`` again; the factors,
inverses and momentum are restored from the file.
"""
from __future__ import annotations

import threading
import warnings

import keras
import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import LayerCapture, split_layers
from tfwd.curvature.preconditions import check_loss, check_outputs_logits
from tfwd.curvature.inverse import damped_inverses, kl_clip_scale, precondition
from tfwd.curvature.statistics import check_curvature, layer_statistics
from tfwd.curvature.step import install_train_step
from tfwd.optimizers.decay import DecayGroup, WeightDecay


def _kernel_and_bias(variables, layer_name):
    by_path = {v.path: v for v in variables}
    suffix_kernel, suffix_bias = f"{layer_name}/kernel", f"{layer_name}/bias"
    kernel = [v for p, v in by_path.items() if p == suffix_kernel or p.endswith("/" + suffix_kernel)]
    bias = [v for p, v in by_path.items() if p == suffix_bias or p.endswith("/" + suffix_bias)]
    if len(kernel) != 1 or len(bias) > 1:
        raise ValueError(
            f"K-FAC layer {layer_name!r}: expected one '{suffix_kernel}' variable among "
            f"{sorted(by_path)}; layer names must be unique."
        )
    return kernel[0], (bias[0] if bias else None)


@keras.saving.register_keras_serializable(package="tfwd")
class KFAC(keras.optimizers.Optimizer):
    """K-FAC for Keras 3 (see the module docstring for the update).

    Args:
      learning_rate: η (float or schedule).
      curvature: ``"gauss_newton"`` (KFAC-G), ``"fisher"`` (KFAC-F) or ``"empirical"``.
      damping: λ, Tikhonov damping split between the factors by π.
      momentum: μ.
      cov_decay: moving-average decay of A and G.
      cov_every: recompute statistics every this many steps.
      inv_every: recompute damped inverses every this many steps.
      kl_clip: c of KL clipping, or None to disable.
      weight_decay, decay_type, decay_group, top_layer: the shared decay rule
        (``tfwd.optimizers.decay``).
      gauss_newton_samples: Rademacher vectors per statistics step for KFAC-G; None = exact
        over all outputs (one backward pass per class).
      seed: seed of the Fisher target / Rademacher sampling (stateless, per step).
      layers: names of the covered layers; filled in by ``attach`` and saved in the config.
    """

    def __init__(
        self,
        learning_rate=0.01,
        curvature: str = "gauss_newton",
        damping: float = 1e-3,
        momentum: float = 0.9,
        cov_decay: float = 0.95,
        cov_every: int = 10,
        inv_every: int = 100,
        kl_clip: float | None = None,
        weight_decay: float = 0.0,
        decay_type: str = "decoupled",
        decay_group: DecayGroup = "all",
        top_layer: str = "top",
        gauss_newton_samples: int | None = 1,
        seed: int = 0,
        layers: list[str] | None = None,
        name: str = "kfac",
        **kwargs,
    ):
        decay = WeightDecay(weight_decay, decay_type, decay_group, top_layer)
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=decay.keras_weight_decay,
            name=name,
            **kwargs,
        )
        self.decay = decay
        check_curvature(curvature)
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
        self.curvature = curvature
        self.damping = float(damping)
        self.momentum = float(momentum)
        self.cov_decay = float(cov_decay)
        self.cov_every = int(cov_every)
        self.inv_every = int(inv_every)
        self.kl_clip = None if kl_clip is None else float(kl_clip)
        self.gauss_newton_samples = gauss_newton_samples
        self.seed = int(seed)
        self.layer_names = list(layers) if layers is not None else None
        self.curvature_layers = []  # the Layer objects, known after attach()
        self.needs_persistent_tape = True  # statistics back-propagate again from the logits
        self._blocks = []
        self._pending = threading.local()  # statistics from observe() awaiting apply()

    # ------------------------------------------------------------------ set-up
    def attach(self, model: keras.Model) -> "KFAC":
        """Register ``model``'s Dense/Conv2D layers, build the state, install the fit step.

        Call once after ``compile`` (or after ``load_model``). Raises if the model does not
        output logits or has no supported layer; warns once listing the variables that get
        plain SGD-with-momentum updates.
        """
        layers, others = split_layers(model)
        check_outputs_logits(model, "K-FAC")
        check_loss(model, "K-FAC", self.curvature)
        if not layers:
            raise ValueError(f"Model {model.name!r} has no Dense or Conv2D layer for K-FAC.")
        names = [layer.name for layer in layers]
        if self.layer_names is not None and self.layer_names != names:
            raise ValueError(
                f"This K-FAC optimizer covers layers {self.layer_names}, but model "
                f"{model.name!r} has {names}; attach it to the model it was built for."
            )
        uncovered = [v.path for layer in others for v in layer.trainable_weights]
        if uncovered:
            warnings.warn(
                "K-FAC does not precondition these variables; they get SGD with momentum "
                f"under the same weight-decay rule: {uncovered}",
                stacklevel=2,
            )
        self.layer_names = names
        self.curvature_layers = layers
        self._blocks = [KroneckerBlock.for_layer(layer) for layer in layers]
        if not self.built:
            # Built here, under the model's strategy scope, never lazily inside a traced step.
            with model.distribute_strategy.scope():
                self.build(model.trainable_variables)
        install_train_step(model, [self])
        return self

    def build(self, variables):
        if self.built:
            return
        if self.layer_names is None:
            raise ValueError(
                "K-FAC does not know the model's layers yet: call optimizer.attach(model) "
                "before training (after compile or load_model)."
            )
        self.decay.check_group(variables)
        super().build(variables)
        self._covered = [_kernel_and_bias(variables, name) for name in self.layer_names]
        self.input_factors, self.output_factors = [], []
        self.input_inverses, self.output_inverses = [], []
        for name, (kernel, bias) in zip(self.layer_names, self._covered):
            layout = self._layout(name, kernel, bias)
            input_dim, output_dim = layout.input_dim, layout.output_dim
            for store, shape, init, label in (
                (self.input_factors, input_dim, "zeros", "A"),
                (self.output_factors, output_dim, "zeros", "G"),
                (self.input_inverses, input_dim, "identity", "A_inverse"),
                (self.output_inverses, output_dim, "identity", "G_inverse"),
            ):
                store.append(
                    self.add_variable((shape, shape), initializer=init, name=f"{name}_{label}")
                )
        self.statistics_updates = self.add_variable((), initializer="zeros", dtype="int64",
                                                    name="statistics_updates")
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        covered_keys = {self._var_key(v) for pair in self._covered for v in pair if v is not None}
        self._uncovered_keys = {self._var_key(v) for v in variables} - covered_keys

    # ------------------------------------------------------------ statistics
    def _is_statistics_step(self):
        return tf.equal(self.iterations % self.cov_every, 0)

    def _is_inverse_step(self):
        return tf.equal(self.iterations % self.inv_every, 0)

    def _sampling_seed(self):
        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.iterations, tf.int64)])

    def local_statistics(self, tape, records, y_pred, y):
        """This replica's [(A, G)] for the covered layers (tfwd.curvature.statistics).

        Sampling is indexed by the example's place in the global batch, so the statistics
        do not depend on how many replicas share the batch.
        """
        context = tf.distribute.get_replica_context()
        local_batch = tf.shape(y_pred)[0]
        replicas = context.num_replicas_in_sync if context is not None else 1
        replica = context.replica_id_in_sync_group if context is not None else 0
        return layer_statistics(
            self._blocks, records, tape, y_pred, y, self.curvature,
            self._sampling_seed(), self.gauss_newton_samples,
            example_offset=tf.cast(replica, tf.int32) * local_batch,
            total_examples=local_batch * replicas,
        )

    def observe(self, tape, records, y_pred, y, gradients):
        """Consumer hook of ``tfwd.curvature.step``: statistics every ``cov_every`` steps.

        The replica's statistics are held until ``apply``, which all-reduces them in the
        same collective as the gradients (two collectives per step were issued in different
        orders on different devices under MirroredStrategy: "Shape mismatch in the
        collective instance"). Replica threads trace concurrently, hence a thread-local.
        """
        if not self._blocks:
            raise ValueError("Call optimizer.attach(model) before training with K-FAC.")
        zeros = [(tf.zeros_like(a), tf.zeros_like(g))
                 for a, g in zip(self.input_factors, self.output_factors)]
        # The cond holds only replica-local math: the expensive part, skipped most steps.
        self._pending.statistics = tf.cond(
            self._is_statistics_step(),
            lambda: self.local_statistics(tape, records, y_pred, y),
            lambda: zeros,
        )
        return gradients

    def update_curvature(self, local_stats, average: bool, already_reduced: bool = False):
        """Mean of the replicas' statistics into A, G; refresh inverses when due.

        ``average=True`` makes the factors a plain running mean (factor initialisation);
        otherwise the moving-average weight is min(cov_decay, n/(n+1)) after n updates.
        Returns a tensor to take control dependencies on (the update has happened).
        """
        context = tf.distribute.get_replica_context()
        if not already_reduced and context.num_replicas_in_sync > 1:
            flat = [s for pair in local_stats for s in pair]
            flat = context.all_reduce(tf.distribute.ReduceOp.MEAN, flat)
            local_stats = list(zip(flat[0::2], flat[1::2]))
        # Like Keras's own update: a real merge only where the strategy needs one.
        return tf.__internal__.distribute.interim.maybe_merge_call(
            self._merge_curvature, self._distribution_strategy, local_stats, average=average
        )

    def _merge_curvature(self, strategy, stats, average):
        # Predicates are read here, in cross-replica context, from the mirrored step counter;
        # ``stats`` are identical on every replica, each device updates its own copy.
        is_statistics_step = tf.constant(True) if average else self._is_statistics_step()
        factors = [v for pair in zip(self.input_factors, self.output_factors) for v in pair]
        flat_stats = [s for pair in stats for s in pair]
        count = tf.cast(self.statistics_updates, tf.float32)
        weight = count / (count + 1.0)
        if not average:
            weight = tf.minimum(weight, self.cov_decay)

        def update_factors():
            for factor, value in zip(factors, flat_stats):
                strategy.extended.update(
                    factor.value,
                    lambda var, new: var.assign(weight * var + (1.0 - weight) * new),
                    args=(value,),
                    group=False,
                )
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

    def _merge_inverses(self, strategy):
        for name, A, G, A_inv, G_inv in zip(self.layer_names, self.input_factors,
                                            self.output_factors, self.input_inverses,
                                            self.output_inverses):
            def assign_inverses(a_inv, g_inv, a, g, name=name):
                message = (f"K-FAC factors of layer {name!r} are not finite: training diverged. "
                           "Lower the learning rate, raise damping or set kl_clip")
                a = tf.debugging.check_numerics(a, message)
                g = tf.debugging.check_numerics(g, message)
                new_a_inv, new_g_inv = damped_inverses(a, g, self.damping)
                return a_inv.assign(new_a_inv), g_inv.assign(new_g_inv)

            strategy.extended.update(
                A_inv.value, lambda a_inv, g_inv, a, g: assign_inverses(a_inv, g_inv, a, g),
                args=(G_inv.value, A.value, G.value), group=False,
            )
        return tf.constant(True)

    def refresh_inverses(self):
        """Recompute all damped inverses now (after factor initialisation)."""
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._merge_inverses, self._distribution_strategy
        )

    def initialize_factors(self, model: keras.Model, batches, num_batches: int) -> None:
        """Set A, G to their average over ``num_batches`` batches, then invert them.

        The authors initialise the factors with one pass over the training data. ``batches``
        is an iterable of (x, y) global batches; runs under ``model.distribute_strategy``.
        """
        if not self._blocks:
            raise ValueError("Call optimizer.attach(model) before initialize_factors.")
        strategy = model.distribute_strategy
        def replica_step(x, y):
            with tf.GradientTape(persistent=True) as tape, LayerCapture(self.curvature_layers) as capture:
                y_pred = model(x, training=False)
            stats = self.local_statistics(tape, capture.records, y_pred, y)
            del tape
            self.update_curvature(stats, average=True)

        step = tf.function(lambda x, y: strategy.run(replica_step, args=(x, y)))
        dataset = strategy.experimental_distribute_dataset(batches) \
            if isinstance(batches, tf.data.Dataset) else batches
        for index, (x, y) in enumerate(dataset):
            if index >= num_batches:
                break
            step(x, y)
        tf.function(lambda: strategy.run(self.refresh_inverses))()

    # ------------------------------------------------------------------ update
    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        statistics = getattr(self._pending, "statistics", None)
        if statistics is None:
            raise ValueError(
                "K-FAC got gradients without curvature statistics: train through "
                "model.fit after optimizer.attach(model), or through "
                "tfwd.curvature.step.forward_backward with the optimizer as a consumer."
            )
        self._pending.statistics = None
        trainable_variables = [v.value if isinstance(v, keras.Variable) else v
                               for v in trainable_variables]
        flat_statistics = [s for pair in statistics for s in pair]
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            # One collective for gradients (SUM, as Keras) and statistics (then / replicas).
            reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, list(grads) + flat_statistics)
            grads = reduced[: len(grads)]
            flat_statistics = [s / context.num_replicas_in_sync for s in reduced[len(grads):]]
        updated = self.update_curvature(
            list(zip(flat_statistics[0::2], flat_statistics[1::2])), average=False,
            already_reduced=True,
        )
        with tf.control_dependencies([updated]):  # precondition with this step's inverses
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
        gradients = [self.decay.l2_gradient(g, v) for g, v in zip(gradients, variables)]
        directions = list(gradients)
        for name, (kernel, bias), A_inv, G_inv in zip(self.layer_names, self._covered,
                                                      self.input_inverses, self.output_inverses):
            k = index[self._var_key(kernel)]
            b = index[self._var_key(bias)] if bias is not None else None
            block = self._layout(name, kernel, bias)
            matrix = block.to_matrix(gradients[k], gradients[b] if b is not None else None)
            kernel_dir, bias_dir = block.from_matrix(precondition(matrix, A_inv, G_inv))
            directions[k] = kernel_dir
            if b is not None:
                directions[b] = bias_dir
        if self.kl_clip is not None:
            scale = kl_clip_scale(gradients, directions, learning_rate, self.kl_clip)
            directions = [scale * d for d in directions]
        return directions

    def update_step(self, direction, variable, learning_rate):
        """v ← μv + νP;  θ ← θ − ηv (decoupled decay was applied by the base class)."""
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        self.assign(velocity, self.momentum * velocity + direction)
        self.assign_sub(variable, learning_rate * velocity)

    @staticmethod
    def _layout(name, kernel, bias) -> KroneckerBlock:
        """The block's matrix layout from its variables alone (enough for sizes and to/from_matrix)."""
        return KroneckerBlock(name=name, kernel_shape=tuple(kernel.shape), has_bias=bias is not None)

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
            "layers": self.layer_names,
        })
        return config

