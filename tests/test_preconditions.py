"""K-FAC's and the noise's preconditions are checked, never assumed (tfwd.curvature.preconditions),
and decay groups see what the README says they see."""
import keras
import numpy as np
import pytest

from tfwd.curvature.preconditions import check_outputs_logits
from tfwd.curvature.statistics import kronecker_factors
from tfwd.noise import make_noise
from tfwd.optimizers import KFAC, SGD
from tfwd.train.step import TrainStep

LOGITS_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _softmax_layer_last():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Softmax(name="probs")(
        keras.layers.Dense(3, name="top")(inputs)))


def _softmax_in_nested_model():
    inner_inputs = keras.Input((4,))
    inner = keras.Model(inner_inputs, keras.layers.Dense(3, activation="softmax", name="top")(
        inner_inputs), name="head")
    inputs = keras.Input((4,))
    return keras.Model(inputs, inner(keras.layers.Dense(4, name="hidden")(inputs)))


def _dropout_after_sigmoid():
    inputs = keras.Input((4,))
    probabilities = keras.layers.Activation("sigmoid", name="squash")(
        keras.layers.Dense(3, name="top")(inputs))
    return keras.Model(inputs, keras.layers.Dropout(0.1)(probabilities))


def _ops_softmax():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.ops.softmax(keras.layers.Dense(3, name="top")(inputs)))


@pytest.mark.parametrize("build, where", [
    (_softmax_layer_last, "probs"), (_softmax_in_nested_model, "head/top"),
    (_dropout_after_sigmoid, "squash"), (_ops_softmax, "softmax"),
])
def test_probability_outputs_are_refused_wherever_the_softmax_sits(build, where):
    with pytest.raises(ValueError, match=f"logits.*{where}"):
        check_outputs_logits(build(), "K-FAC")


def test_logit_models_pass_even_with_a_softmax_inside():
    inputs = keras.Input((4,))
    hidden = keras.layers.Softmax()(keras.layers.Dense(4)(inputs))  # attention-like, not output
    check_outputs_logits(keras.Model(inputs, keras.layers.Dense(3, name="top")(hidden)), "K-FAC")


def test_kfac_and_noise_refuse_a_softmax_layer_output():
    model = _softmax_layer_last()
    model.compile(optimizer=KFAC(), loss=LOGITS_LOSS)
    with pytest.raises(ValueError, match="logits"):
        model.optimizer.attach(model)
    with pytest.raises(ValueError, match="logits"):
        make_noise("diag_fisher", _softmax_layer_last(), large_batch_size=8, small_batch_size=2,
                   steps_per_epoch=1)


def _classifier():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, name="top")(
        keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)))


@pytest.mark.parametrize("curvature, loss", [
    ("fisher", keras.losses.MeanSquaredError()), ("empirical", "mse"),
    ("gauss_newton", "sparse_categorical_crossentropy"),  # a string: Keras's from_logits=False
    ("gauss_newton", keras.losses.SparseCategoricalCrossentropy()),
    ("fisher", keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)),
])
def test_kfac_refuses_losses_its_curvature_is_not_defined_for(curvature, loss):
    model = _classifier()
    model.compile(optimizer=KFAC(curvature=curvature), loss=loss)
    with pytest.raises(ValueError, match="Supported .*fisher: SparseCategoricalCrossentropy"):
        model.optimizer.attach(model)


def _data(seed=0, batch=8):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 4)).astype("float32"), rng.integers(0, 3, batch)


def test_noise_refuses_an_unsupported_loss_when_it_trains():
    model = _classifier()
    model.compile(optimizer=SGD(0.1), loss="mse")
    TrainStep(model, [make_noise("diag_fisher", model, large_batch_size=8,
                                 small_batch_size=2, steps_per_epoch=1)]).install()
    x, y = _data()
    with pytest.raises(ValueError, match="CurvatureNoise with curvature 'noise'"):
        model.fit(x, keras.ops.one_hot(y, 3), batch_size=8, epochs=1, verbose=0)


def test_kfac_refuses_sample_weights():
    model = _classifier()
    model.compile(optimizer=KFAC(cov_every=1, inv_every=1), loss=LOGITS_LOSS)
    model.optimizer.attach(model)
    TrainStep(model).install()
    x, y = _data()
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, y, sample_weight=np.linspace(0.1, 1, 8), batch_size=8, verbose=0)


def test_empirical_curvature_takes_one_hot_labels_as_the_integer_labels_they_encode():
    model = _classifier()
    x, y = _data()
    integer = kronecker_factors(model, x, y, curvature="empirical")
    one_hot = kronecker_factors(model, x, np.eye(3, dtype="float32")[y], curvature="empirical")
    for name in integer:
        for a, b in zip(integer[name], one_hot[name]):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    model.compile(optimizer=KFAC(curvature="empirical", cov_every=1, inv_every=1),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.optimizer.attach(model)
    TrainStep(model).install()
    model.fit(x, np.eye(3, dtype="float32")[y], batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize("make_optimizer", [
    lambda group: SGD(0.1, momentum=0.9, weight_decay=0.1, decay_group=group),
    lambda group: KFAC(0.1, weight_decay=0.1, decay_type="l2", decay_group=group,
                       cov_every=1, inv_every=1),
], ids=["sgd_decoupled", "kfac_l2"])
def test_decay_group_predicates_receive_keras_variables(make_optimizer):
    seen = []

    def kernels(variable):
        seen.append(variable)
        return variable.path.endswith("kernel")

    model = _classifier()
    model.compile(optimizer=make_optimizer(kernels), loss=LOGITS_LOSS)
    if isinstance(model.optimizer, KFAC):
        model.optimizer.attach(model)
        TrainStep(model).install()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert seen and all(isinstance(v, keras.Variable) for v in seen)
    assert {v.path for v in seen} == {v.path for v in model.trainable_variables}


def test_rest_group_without_a_top_layer_is_an_error():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="output")])
    with pytest.raises(ValueError, match="'rest' would decay all"):
        SGD(weight_decay=0.1, decay_group="rest").build(model.trainable_variables)
