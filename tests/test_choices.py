"""The vocabulary (tfwd.choices): plain strings, one set of defaults, no TensorFlow.

References are written out here as the strings a saved config, a flag or a run key holds, so
that renaming a value or reordering a concept (which seeds noise and diagnostics) fails.
"""
import dataclasses
import inspect
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from tfwd.choices import damping, kfac
from tfwd.choices.diagnostics import DIAGNOSTIC_NAMES
from tfwd.choices.noise import NOISE_KINDS
from tfwd.choices.optimizers import OPTIMIZERS, Optimizer, is_kfac, kfac_curvature
from tfwd.train import TrainConfig

_IMPORT_ALL = """
import pkgutil, sys
import tfwd.choices
for module in pkgutil.iter_modules(tfwd.choices.__path__):
    __import__("tfwd.choices." + module.name)
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_the_vocabulary_imports_without_tensorflow():
    output = subprocess.run([sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True,
                            check=True).stdout
    assert "tensorflow imported: False" in output, output


def test_values_are_the_plain_strings_flags_and_configs_hold():
    import importlib
    import pkgutil

    import tfwd.choices
    from tfwd.choices._choice import Choice

    assert Optimizer.KFAC_G == "kfac_g" and type(Optimizer.KFAC_G) is str
    assert OPTIMIZERS == ("sgd", "adam", "kfac_g", "kfac_f")
    concepts = [value for module in pkgutil.iter_modules(tfwd.choices.__path__)
                for value in vars(importlib.import_module("tfwd.choices." + module.name)).values()
                if isinstance(value, type) and issubclass(value, Choice) and value is not Choice]
    assert len(concepts) >= 20
    for concept in concepts:
        values = concept.values()
        assert values and all(type(value) is str for value in values), concept
        assert len(set(values)) == len(values), concept


def test_kfac_variants_and_their_curvatures():
    assert [name for name in OPTIMIZERS if is_kfac(name)] == ["kfac_g", "kfac_f"]
    assert kfac_curvature("kfac_g") == "gauss_newton"
    assert kfac_curvature("kfac_f") == "fisher"
    with pytest.raises(ValueError, match="'sgd' is not K-FAC"):
        kfac_curvature("sgd")


def test_orders_that_seed_random_streams_are_pinned():
    # tfwd.noise.consumer seeds a kind by its index, tfwd.diagnostics.registry a diagnostic.
    assert NOISE_KINDS == ("none", "diag_fisher", "full_fisher", "trace", "kfac",
                           "multiplicative")
    assert DIAGNOSTIC_NAMES == (
        "effective_lr", "weight_norms", "jacobian_norm", "gauss_newton_norm",
        "kfac_gauss_newton_norm", "generalization_gap", "fisher_norms", "effective_damping",
        "gradient_variance", "hessian_eigenvalue")


@pytest.mark.parametrize("fields, named", [
    ({"damping_interval": 0}, "damping_interval"),
    ({"damping_interval": 2.0}, "damping_interval"),
    ({"damping_decay": 1.0}, "damping_decay"),
    ({"min_damping": 1.0, "max_damping": 0.1}, "min_damping <= max_damping"),
    ({"max_damping": 1e-4}, "outside the adaptation bounds"),
])
def test_config_and_optimizer_refuse_the_same_adaptive_damping(fields, named):
    from tfwd.optimizers.damping import DampingAdaptation

    config = TrainConfig.from_flat(optimizer="kfac_g", adaptive_damping=True, **fields)
    with pytest.raises(ValueError, match=named):
        config.validate()
    flat = config.flat()
    with pytest.raises(ValueError, match=named):
        DampingAdaptation(flat["damping_interval"], flat["damping_decay"], flat["min_damping"],
                          flat["max_damping"]).check_initial(flat["damping"])


@pytest.mark.parametrize("samples", [0, -1, 1.5, True])
def test_gauss_newton_samples_is_a_count_or_none(samples):
    with pytest.raises(ValueError, match="--gauss_newton_samples=0"):
        TrainConfig.from_flat(gauss_newton_samples=samples).validate()


def test_launcher_spells_exact_gauss_newton_as_zero(tmp_path):
    import tfwd.launch.train as launcher

    with flagsaver.flagsaver(workdir=str(tmp_path), gauss_newton_samples=0):
        assert launcher.config_from_flags().optimizer.kfac.gauss_newton_samples is None
    with flagsaver.flagsaver(workdir=str(tmp_path), gauss_newton_samples=-1):
        with pytest.raises(SystemExit, match="gauss_newton_samples"):
            launcher.checked_config_or_exit()


def _defaults(function) -> dict:
    return {name: parameter.default for name, parameter in
            inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def test_library_defaults_are_the_run_defaults():
    import tfwd.models
    from tfwd.bench.config import BenchConfig
    from tfwd.diagnostics.registry import build_callbacks
    from tfwd.noise import CurvatureNoise, make_noise
    from tfwd.optimizers import KFAC, SGD
    from tfwd.optimizers.damping import DampingAdaptation

    run = TrainConfig().flat()  # flat names, as the library's arguments are named
    optimizer = _defaults(KFAC)
    for field in ("damping", "momentum", "cov_decay", "cov_every", "inv_every", "kl_clip",
                  "gauss_newton_samples", "inverse", "low_rank", "shard_inverses", "weight_decay",
                  "decay_type", "decay_group"):
        assert optimizer[field] == run[field], field
    assert _defaults(SGD)["momentum"] == run["momentum"]
    assert dataclasses.astuple(DampingAdaptation()) == (
        run["damping_interval"], run["damping_decay"], run["min_damping"], run["max_damping"])
    for noise_function in (CurvatureNoise, make_noise):
        noise_defaults = _defaults(noise_function)
        assert noise_defaults["multiplicative_std"] == run["multiplicative_std"]
        assert noise_defaults["noise_until_epoch"] == run["noise_until_epoch"]
    assert _defaults(tfwd.models.build)["batch_norm"] == run["batch_norm"]
    callbacks = _defaults(build_callbacks)
    assert (callbacks["damping"], callbacks["sample_size"]) == (
        run["damping"], run["diagnostics_sample_size"])
    bench = BenchConfig()
    assert (bench.cov_every, bench.inv_every, bench.damping, bench.gauss_newton_samples,
            bench.inverse, bench.low_rank, bench.small_batch_size) == (
        run["cov_every"], run["inv_every"], run["damping"], run["gauss_newton_samples"], run["inverse"],
        run["low_rank"], run["small_batch_size"])
    # The curvature library measures with the optimizer's sampling unless told otherwise.
    from tfwd.curvature.statistics import kronecker_factors

    assert _defaults(kronecker_factors)["gauss_newton_samples"] == kfac.GAUSS_NEWTON_SAMPLES
    assert kfac.EXACT_GAUSS_NEWTON is None
    assert damping.INTERVAL == 5 and damping.DECAY == 0.95  # Martens & Grosse §6.5

