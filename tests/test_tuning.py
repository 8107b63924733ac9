"""The hyper-parameter search (tfwd.tuning, tfwd.launch.tune) against the protocol it promises.

Fast tests check the grid arithmetic against the rules they restate and the resume semantics
with trials that do not train. The slow ones run the real thing on real MNIST (prepared
offline; `python -m tfwd.data.prepare mnist`) with a one-hidden-layer MLP of width 64 and one
epoch per trial: an in-process search with retraining, a search killed with SIGKILL and rerun,
and a chief with two worker processes on 127.0.0.1.
"""
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from absl import flags
from absl.testing import flagsaver

import tfwd.data
from tfwd.train import TrainConfig
from tfwd.tuning import (GridError, GridTuner, SearchSetupError, TrainHyperModel, check_grid,
                         default_grid, effective_learning_rates, grid_points, parse_grid,
                         run_search)
from tfwd.data.sharing import shared_input_pipelines
from tfwd.tuning.grid import MNIST_PAPER_LEARNING_RATES, paper_000_grid

FLAGS = flags.FLAGS
TINY_MLP = {"depth": 1, "width": 64}
GRID = {"learning_rate": (0.1, 0.03), "weight_decay": (1e-4, 1e-3)}
GRID_FLAG = "lr=0.1,0.03;weight_decay=1e-4,1e-3"
MNIST_TRAIN, MNIST_HELD_OUT, MNIST_OFFICIAL_TRAIN = 55_000, 5_000, 60_000
SUBPROCESS_TIMEOUT_SECONDS = 600  # each run takes well under a minute; generous under load


def tiny_base(**overrides) -> TrainConfig:
    values = dict(dataset="mnist", model="mlp", model_kwargs=dict(TINY_MLP), epochs=1, verbose=0)
    return TrainConfig.from_flat(**{**values, **overrides})


def as_points(entries) -> list[dict]:
    return [entry["values"] for entry in entries]


# --- The grid -----------------------------------------------------------------------------


def test_parse_grid_reads_the_flag_syntax_in_order():
    assert parse_grid(GRID_FLAG) == GRID
    assert parse_grid(" damping = 1e-3 ; lr=0.3 ;") == {"damping": (1e-3,), "learning_rate": (0.3,)}


@pytest.mark.parametrize("text, named", [
    ("lr=0.1,abc", "'abc' is not a number"),
    ("lr0.1", "is not KEY=V1,V2"),
    ("beta=0.9", "unknown key 'beta'"),
    ("lr=0.1;learning_rate=0.2", "appears twice"),
    ("lr=0.1,0.1", "repeated values"),
    (";", "holds no KEY"),
])
def test_parse_grid_rejects_bad_syntax_naming_the_problem(text, named):
    with pytest.raises(GridError, match=named):
        parse_grid(text)


def test_check_grid_rejects_fields_the_optimizer_ignores_and_invalid_points():
    with pytest.raises(GridError, match="damping has no effect on optimizer 'sgd'"):
        check_grid({"damping": (1e-3,)}, tiny_base(optimizer="sgd"))
    with pytest.raises(GridError, match="momentum has no effect on optimizer 'adam'"):
        check_grid({"momentum": (0.9,)}, tiny_base(optimizer="adam"))
    with pytest.raises(GridError, match="learning_rate must be > 0"):
        check_grid({"learning_rate": (0.1, 0.0)}, tiny_base())
    check_grid(default_grid("kfac_g"), tiny_base(optimizer="kfac_g"))


# docs/equations.md §9, the authors' best points at batch 128: (optimizer, decay type) ->
# (learning rate, γ). Paper 000's paper-scale grids must hold them (tfwd.tuning.grid).
AUTHORS_POINTS = {
    ("sgd", "l2"): [(0.1, 1e-3), (0.01, 3e-3)],
    ("adam", "decoupled"): [(3e-4, 0.3)],
    ("kfac_g", "decoupled"): [(0.03, 3e-2), (0.05, 1e-2)],
    ("kfac_f", "decoupled"): [(1e-3, 1.0), (3e-4, 1.0)],
}


def test_paper_000_grids_are_searchable_and_hold_the_authors_points():
    for optimizer in ("sgd", "adam", "kfac_g", "kfac_f"):
        for decay_type in ("l2", "decoupled"):
            grid = paper_000_grid(optimizer, decay_type)
            check_grid(grid, tiny_base(optimizer=optimizer, decay_type=decay_type))
            for rate, decay in AUTHORS_POINTS.get((optimizer, decay_type), []):
                assert rate in grid["learning_rate"] and decay in grid["weight_decay"]
        assert set(paper_000_grid(optimizer, None)) == {"learning_rate"}  # no decay, no γ
    # mnist_paper: a factor 2 either side of paper 002's base rate 0.1.
    assert MNIST_PAPER_LEARNING_RATES == (0.1 / 2, 0.1, 0.1 * 2)


def test_default_grids_are_the_issue_grids():
    sgd_decays = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
    assert default_grid("sgd") == {"learning_rate": (0.3, 0.1, 0.03), "weight_decay": sgd_decays}
    for kfac in ("kfac_g", "kfac_f"):
        assert default_grid(kfac) == {"learning_rate": (3e-2, 1e-2, 3e-3),
                                      "damping": (3e-2, 1e-2, 3e-3, 1e-3),
                                      "weight_decay": sgd_decays}
    adam = default_grid("adam")
    assert adam["learning_rate"] == (1e-3, 3e-4, 1e-4)
    # docs/equations.md §9: the authors' best Adam point (lr 3e-4, decoupled wd 0.3) is in the grid.
    assert 3e-4 in adam["learning_rate"] and 0.3 in adam["weight_decay"]
    assert default_grid("adam", decay_type="l2")["weight_decay"] == sgd_decays
    assert len(grid_points(default_grid("kfac_f"))) == 3 * 4 * 5


@pytest.mark.parametrize("batch_size", [640, 2000])
def test_learning_rates_rescale_with_batch_size(batch_size):
    rates = default_grid("sgd")["learning_rate"]
    ratio = batch_size / 128
    linear = effective_learning_rates(default_grid("sgd"),
                                      tiny_base(batch_size=batch_size, lr_scaling="linear"))
    sqrt = effective_learning_rates(default_grid("sgd"),
                                    tiny_base(batch_size=batch_size, lr_scaling="sqrt"))
    assert linear == pytest.approx([rate * ratio for rate in rates])
    assert sqrt == pytest.approx([rate * math.sqrt(ratio) for rate in rates])
    assert effective_learning_rates(default_grid("sgd"), tiny_base(batch_size=batch_size)) == rates


def test_grid_points_vary_the_last_key_fastest():
    assert grid_points(GRID) == [
        {"learning_rate": lr, "weight_decay": wd} for lr in (0.1, 0.03) for wd in (1e-4, 1e-3)
    ]


# --- Resume semantics, with trials that do not train --------------------------------------


class Killed(BaseException):
    """Stands for SIGKILL: keras-tuner catches Exception, not BaseException."""


class ScoredWithoutTraining(GridTuner):
    """Scores a point by a formula instead of training; can die inside a chosen trial."""

    def __init__(self, directory, calls, kill_at_call=None):
        super().__init__(TrainHyperModel(tiny_base(), GRID), directory)
        self.calls, self.kill_at_call = calls, kill_at_call

    def run_trial(self, trial):
        point = self.hypermodel.point(trial.hyperparameters)
        self.calls.append(point)
        if len(self.calls) == self.kill_at_call:
            raise Killed()
        score = point["learning_rate"] - point["weight_decay"]
        return {"validation_accuracy": score, "trial_seconds": 0.0}


def test_killed_search_redoes_the_running_trial_and_never_a_finished_one(tmp_path, capsys):
    calls = []
    with pytest.raises(Killed):
        ScoredWithoutTraining(str(tmp_path), calls, kill_at_call=3).search()
    finished_before_kill = calls[:2]
    ScoredWithoutTraining(str(tmp_path), calls).search()
    # The killed point (call 3) runs again first, then the one never started.
    assert calls[2:] == [grid_points(GRID)[2], grid_points(GRID)[2], grid_points(GRID)[3]]
    assert finished_before_kill == grid_points(GRID)[:2]
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial")]
    assert [line.split(":")[0] for line in progress] == [f"trial {i}/4" for i in range(1, 5)]
    assert progress[0] == "trial 1/4: learning_rate=0.1 weight_decay=0.0001 " \
                          f"validation_accuracy={0.1 - 1e-4:.4f} time=0.0s"
    # A third run finds nothing left to do.
    ScoredWithoutTraining(str(tmp_path), calls).search()
    assert len(calls) == 5


# --- The launcher's flag checks (no training) ---------------------------------------------


@pytest.mark.parametrize("grid, named", [("lr=0.1;bogus=1", "unknown key 'bogus'"),
                                         ("lr=fast", "'fast' is not a number"),
                                         ("damping=1e-3", "damping has no effect")])
def test_launcher_rejects_a_bad_grid_naming_the_flag(tmp_path, grid, named):
    from tfwd.launch import tune

    with flagsaver.flagsaver(directory=str(tmp_path / "search"), grid=grid):
        with pytest.raises(SystemExit, match=f"--grid: .*{named}"):
            tune.main([])
    assert not os.path.exists(tmp_path / "search")


def test_rerun_with_other_settings_is_refused(tmp_path):
    from tfwd.tuning.search import check_settings

    check_settings(str(tmp_path), tiny_base(), GRID)
    check_settings(str(tmp_path), tiny_base(verbose=1), GRID)  # verbosity changes no number
    with pytest.raises(SearchSetupError, match="differing: \\['epochs'\\]"):
        check_settings(str(tmp_path), tiny_base(epochs=2), GRID)
    with pytest.raises(SearchSetupError, match="grid"):
        check_settings(str(tmp_path), tiny_base(), {"learning_rate": (0.1,)})


# --- Real searches on real MNIST ----------------------------------------------------------


@pytest.fixture(scope="module")
def decoded_once():
    """The in-process searches of this module share one decode of each MNIST split."""
    with shared_input_pipelines():
        yield


def _digests(pipeline, epoch=0) -> set:
    return {hashlib.sha256(image.tobytes()).hexdigest()
            for images, _ in pipeline.epoch(epoch).as_numpy_iterator() for image in images}


def test_search_scores_on_held_out_data_then_retrains_on_all_and_tests_once(
        tmp_path, monkeypatch, decoded_once):
    requests = []  # (split, pipeline) for every pipeline the search builds
    build = tfwd.data.input_pipeline

    def recording_input_pipeline(name, split, **options):
        pipeline = build(name, split, **options)
        requests.append((split, pipeline))
        return pipeline

    monkeypatch.setattr(tfwd.data, "input_pipeline", recording_input_pipeline)
    report = run_search(tiny_base(), str(tmp_path), grid=GRID)

    assert as_points(report["trials"]) == grid_points(GRID)
    assert all(entry["status"] == "COMPLETED" for entry in report["trials"])
    best = max(report["trials"], key=lambda entry: entry["validation_accuracy"])
    assert report["best"] == best
    for entry in report["trials"]:
        trial_dir = tmp_path / "trials" / f"trial_{entry['trial_id']}"
        with open(trial_dir / "results.json") as f:
            results = json.load(f)
        assert results["config"]["data"]["train_split"] == "train"
        assert results["config"]["data"]["evaluate_test"] is False
        assert "test_accuracy" not in results["epochs"][-1]
        # The score is the final epoch's held-out accuracy.
        assert entry["validation_accuracy"] == results["epochs"][-1]["validation_accuracy"]

    # Retraining: the best point, all 60,000 official training examples, the test set.
    with open(tmp_path / "retrain" / "results.json") as f:
        retrained = json.load(f)
    retrained_config = TrainConfig.from_dict(retrained["config"]).flat()
    for field, value in best["values"].items():
        assert retrained_config[field] == value
    assert retrained_config["train_split"] == "train_full"
    assert report["test_accuracy"] == retrained["final"]["test_accuracy"]
    assert 0.9 < report["test_accuracy"] <= 1.0

    # Data: the test split is requested once, by the retraining, after every search request;
    # the trials trained on examples disjoint from the held-out examples that scored them.
    splits = [split for split, _ in requests]
    assert splits.count("test") == 1
    search_requests = splits[:splits.index("train_full")]
    assert set(search_requests) == {"train", "validation"}
    pipelines = {split: pipeline for split, pipeline in requests}
    assert pipelines["train"].num_examples == MNIST_TRAIN
    assert pipelines["validation"].num_examples == MNIST_HELD_OUT
    assert pipelines["train_full"].num_examples == MNIST_OFFICIAL_TRAIN
    held_out = _digests(pipelines["validation"])
    assert len(held_out) == MNIST_HELD_OUT
    assert not held_out & _digests(pipelines["train"])  # the one epoch the trials trained on

    with open(tmp_path / "search.json") as f:
        assert json.load(f) == json.loads(json.dumps(report))
    markdown = (tmp_path / "search.md").read_text()
    assert f"test accuracy {report['test_accuracy']:.4f}" in markdown
    assert markdown.count("| COMPLETED |") == len(grid_points(GRID)) - 1  # + the bold best row

    # Running it again repeats nothing: no trial, no retraining, not one split read.
    requests.clear()
    assert run_search(tiny_base(), str(tmp_path), grid=GRID) == report
    assert requests == []


def test_trials_run_under_a_mirrored_strategy(tmp_path, decoded_once):
    # conftest.py splits the CPU into 2 logical devices.
    report = run_search(tiny_base(strategy="mirrored", num_replicas=2), str(tmp_path),
                        grid={"learning_rate": (0.1,)}, retrain_best=False)
    assert report["trials"][0]["status"] == "COMPLETED"
    with open(tmp_path / "trials" / "trial_0" / "config.json") as f:
        assert json.load(f)["runtime"]["num_replicas"] == 2


def _tune_command(directory, grid=GRID_FLAG):
    return [sys.executable, "-u", "-m", "tfwd.launch.tune", f"--directory={directory}",
            "--dataset=mnist", "--model=mlp", "--depth=1", "--width=64", "--epochs=1",
            "--verbose=0", f"--grid={grid}", "--noretrain"]


def _environment(**variables):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **variables)


def _read_search(directory) -> dict:
    with open(os.path.join(directory, "search.json")) as f:
        return json.load(f)


def test_search_killed_after_its_first_trial_resumes_without_repeating_it(tmp_path):
    directory = tmp_path / "search"
    command = _tune_command(directory, grid="lr=0.1,0.03")
    first = subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        for line in first.stdout:
            if line.startswith("trial 1/2"):
                break
        # Kill inside the second trial, once its training has started.
        deadline = time.time() + SUBPROCESS_TIMEOUT_SECONDS
        while not (directory / "trials" / "trial_1" / "config.json").exists():
            assert first.poll() is None and time.time() < deadline, "second trial never started"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    first_results = (directory / "trials" / "trial_0" / "results.json").read_text()
    assert not (directory / "trials" / "trial_1" / "results.json").exists()

    second = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert second.returncode == 0, second.stderr[-3000:]
    progress = [line for line in second.stdout.splitlines() if line.startswith("trial ")]
    assert len(progress) == 1 and progress[0].startswith("trial 2/2: learning_rate=0.03 ")
    assert (directory / "trials" / "trial_0" / "results.json").read_text() == first_results
    search = _read_search(directory)
    assert as_points(search["trials"]) == [{"learning_rate": 0.1}, {"learning_rate": 0.03}]
    assert [entry["status"] for entry in search["trials"]] == ["COMPLETED"] * 2
    assert second.stdout.splitlines()[-1] == (
        f"validation_accuracy={search['best']['validation_accuracy']:.4f}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_evaluate_every_point_once(tmp_path):
    directory = tmp_path / "search"
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
    processes = {
        tuner_id: subprocess.Popen(_tune_command(directory),
                                   env=_environment(KERASTUNER_TUNER_ID=tuner_id, **oracle),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tuner_id in ("chief", "worker0", "worker1")
    }
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
    trials_run = [int(outputs[w][0].splitlines()[-1].removeprefix("trials_run="))
                  for w in ("worker0", "worker1")]
    assert sum(trials_run) == len(grid_points(GRID))
    search = _read_search(directory)
    assert sorted(map(str, as_points(search["trials"]))) == sorted(map(str, grid_points(GRID)))
    assert [entry["status"] for entry in search["trials"]] == ["COMPLETED"] * len(grid_points(GRID))
    chief_progress = [line for line in outputs["chief"][0].splitlines() if line.startswith("trial")]
    assert len(chief_progress) == len(grid_points(GRID))
