"""The speed benchmark (tfwd.bench): its JSON contract on a tiny run, and its period arithmetic.

No timing is asserted: the numbers depend on the machine and its load; only their presence,
positivity and the ratios' definitions are checked.
"""
import json
import os
import subprocess
import sys

import pytest

from tfwd.choices.noise import ADDED_NOISE_KINDS
from tfwd.choices.optimizers import OPTIMIZERS
from tfwd.bench.steps import period_fractions, step_kind

QUICK_TIMEOUT_SECONDS = 300  # the quick run takes ~30 s; generous for a loaded machine


@pytest.fixture(scope="module")
def quick_results():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-m", "tfwd.bench", "--json", "--quick"],
        capture_output=True, text=True, timeout=QUICK_TIMEOUT_SECONDS, env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_quick_run_reports_machine_and_definitions(quick_results):
    machine = quick_results["machine"]
    for key in ("cpu_model", "logical_cores", "tensorflow", "keras", "load_average_start",
                "load_average_end"):
        assert key in machine
    assert machine["logical_cores"] >= 1
    assert quick_results["step_time_definition"]
    assert quick_results["floor_definition"]
    assert quick_results["wall_seconds"] > 0


def test_quick_run_times_every_optimizer_with_positive_times(quick_results):
    entries = quick_results["steps"]
    models = quick_results["settings"]["models"]
    batch_sizes = quick_results["settings"]["batch_sizes"]
    assert {(e["model"], e["batch_size"], e["optimizer"]) for e in entries} == {
        (m, b, o) for m in models for b in batch_sizes for o in OPTIMIZERS
    }
    for entry in entries:
        assert entry["step_seconds"] > 0
        assert "load_average" in entry and "cpu_share" in entry


def test_quick_run_kfac_entries_carry_floor_and_ratio(quick_results):
    kfac = [e for e in quick_results["steps"] if e["optimizer"].startswith("kfac")]
    assert kfac
    settings = quick_results["settings"]
    for entry in kfac:
        for key in ("ordinary_step_median_seconds", "statistics_step_median_seconds",
                    "inverse_step_seconds", "floor_seconds"):
            assert entry[key] > 0, key
        parts = entry["floor_components"]
        for key in ("sgd_step_seconds", "precondition_seconds", "inverse_seconds"):
            assert parts[key] > 0, key
        assert parts["statistics_seconds"] >= 0
        # The dropped kernel gradients are timed exactly when some block takes the low-rank route.
        assert (parts["dropped_gradients_seconds"] > 0) == bool(parts["low_rank_blocks"])
        floor = (parts["sgd_step_seconds"] - parts["dropped_gradients_seconds"]
                 + parts["precondition_seconds"]
                 + parts["statistics_seconds"] / settings["cov_every"]
                 + parts["inverse_seconds"] / settings["inv_every"])
        assert entry["floor_seconds"] == pytest.approx(floor)
        assert entry["ratio_to_floor"] == pytest.approx(entry["step_seconds"] / floor)
        sgd = next(e for e in quick_results["steps"] if e["optimizer"] == "sgd"
                   and (e["model"], e["batch_size"]) == (entry["model"], entry["batch_size"]))
        assert entry["ratio_to_sgd"] == pytest.approx(entry["step_seconds"] / sgd["step_seconds"])
        assert entry["ratio_to_sgd_cpu"] == pytest.approx(
            entry["step_cpu_seconds"] / sgd["step_cpu_seconds"])
        assert isinstance(parts["low_rank_blocks"], list)
    methods = {e["step_time_method"].split(":")[0] for e in kfac}
    assert methods == {"periods", "in place"}  # quick: mlp by periods, lenet in place


def test_quick_run_reports_every_noise_kind(quick_results):
    noise = quick_results["noise"]
    assert {e["kind"] for e in noise} == set(ADDED_NOISE_KINDS)
    for entry in noise:
        assert entry["step_seconds"] > 0 and entry["plain_sgd_step_seconds"] > 0
        assert entry["noise_step_ratio"] == pytest.approx(
            entry["step_seconds"] / entry["plain_sgd_step_seconds"])
    assert set(quick_results["targets"]) == {"kfac_ratio_to_floor", "noise_step_ratio"}


def test_quick_run_reports_inverse_flops_per_replica(quick_results):
    for entry in quick_results["steps"]:
        if entry["optimizer"].startswith("kfac"):
            inverse = entry["floor_components"]["inverse"]
            flops = inverse["inverse_flops_by_replica"]
            assert flops["replicas"] == quick_results["settings"]["sharded_replicas"] == 2
            assert sum(flops["sharded_flops_per_replica"]) == flops[
                "unsharded_flops_per_replica"] == inverse["inverse_flops_estimate"]
            assert len(flops["owners"]) == len(inverse["factor_shapes"])


def test_inverse_sharding_times_both_paths_on_two_devices():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-m", "tfwd.bench.inverse_sharding", "--json", "--quick", "--rounds=1",
         "--batch_size=16"],
        capture_output=True, text=True, timeout=QUICK_TIMEOUT_SECONDS, env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(results["flops"]) == {"mlp", "lenet"} and set(results["inverse_step"]) == {"mlp"}
    for flops in results["flops"].values():
        assert len(flops["sharded_flops_per_replica"]) == results["replicas"] == 2
        assert sum(flops["sharded_flops_per_replica"]) == flops["unsharded_flops_per_replica"]
    timing = results["inverse_step"]["mlp"]
    for path in ("sharded", "unsharded"):
        assert timing[path]["median_seconds"] > 0 and timing[path]["samples"] >= 1


def test_step_kind_follows_kfac_counters():
    # K-FAC reads the counter before the step: statistics at multiples of cov_every,
    # inverses (after statistics) at multiples of inv_every; counter 0 is both.
    kinds = [step_kind(i, cov_every=10, inv_every=100) for i in (0, 1, 9, 10, 90, 100, 110, 200)]
    assert kinds == ["inverse", "ordinary", "ordinary", "statistics", "statistics", "inverse",
                     "statistics", "inverse"]


@pytest.mark.parametrize("cov_every, inv_every", [(10, 100), (2, 4), (3, 5)])
def test_period_fractions(cov_every, inv_every):
    fractions = period_fractions(cov_every, inv_every)
    if inv_every % cov_every == 0:  # every inverse step is also a statistics step
        expected = {"ordinary": 1 - 1 / cov_every,
                    "statistics": 1 / cov_every - 1 / inv_every,
                    "inverse": 1 / inv_every}
    else:  # coprime periods: multiples of both are inverse steps
        expected = {"ordinary": 1 - 1 / cov_every - 1 / inv_every + 1 / (cov_every * inv_every),
                    "statistics": 1 / cov_every - 1 / (cov_every * inv_every),
                    "inverse": 1 / inv_every}
    assert fractions == pytest.approx(expected)
