"""Run registry entries: train each run once, write each entry's artifact, then index.md.

Layout of ``workdir``::

    runs/<hash>/           one tfwd.train workdir per (configuration, seed); entries that need
                           the same configuration share it (``spec.config_hash``)
    runs/<hash>/search/    paper scale, runs without published hyper-parameters: the grid
                           search and the retraining (``tfwd.tuning.run_search``); a run
                           searched once for all its seeds (``Run.search_once``) trains each
                           seed in its own runs/<hash>/ and shares the first seed's search
    <entry>/               the entry's table or plot, and artifact.json (what was run, how long)
    index.md               one link per entry

Every run resumes where it stopped (``tfwd.train``); a finished run is read, not retrained; an
entry whose artifact exists and whose runs are all finished is skipped. A run that fails is
reported and leaves its entry incomplete, so the next invocation retries it.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import time
import traceback
from typing import Callable, Sequence

from tfwd.data.sharing import shared_input_pipelines
from tfwd.experiments import registry
from tfwd.experiments.reporting import ReportContext
from tfwd.experiments.spec import Experiment, Run, RunKey, Scale, config_hash, seeded
from tfwd.train import TrainConfig

RUNS_DIR = "runs"
INDEX_FILE = "index.md"
RECORD_FILE = "artifact.json"
RESULTS_FILE = "results.json"  # tfwd.train's
SEARCH_DIR = "search"
RETRAIN_DIR = "retrain"  # tfwd.tuning's retraining directory inside a search
SEARCH_REPORT_FILE = "search.json"  # tfwd.tuning's


@dataclasses.dataclass
class PlannedRun:
    """One (run, seed) with its final configuration and its directory under runs/."""

    run: Run
    seed: int
    config: TrainConfig
    key: str
    directory: str
    search_directory: str | None = None  # where the run's grid search lives

    @property
    def results_path(self) -> str:
        if self.run.search and not self.run.search_once:
            return os.path.join(self.directory, SEARCH_DIR, RETRAIN_DIR, RESULTS_FILE)
        return os.path.join(self.directory, RESULTS_FILE)


def plan_runs(runs: Sequence[Run], workdir: str, *, data_dir: str | None = None,
              verbose: int = 0) -> list[PlannedRun]:
    """Every (run, seed) in training order: a weight-norm reference before its users."""
    by_key: dict[RunKey, Run] = {}
    labels = set()
    for run in runs:
        if run.label in labels:
            raise ValueError(f"Two runs are labelled {run.label!r}; labels must be unique.")
        labels.add(run.label)
        by_key[run.key] = run
    planned: dict[tuple[RunKey, int], PlannedRun] = {}

    def plan(run: Run, seed: int) -> PlannedRun:
        if (run.key, seed) not in planned:
            source = None
            if run.reference is not None:
                source = plan(_reference_run(run, seed, by_key), seed)
            planned[(run.key, seed)] = _planned_run(run, seed, workdir, source,
                                                    data_dir=data_dir, verbose=verbose)
        return planned[(run.key, seed)]

    for run in runs:
        for seed in run.seeds:
            plan(run, seed)
    return list(planned.values())


def _reference_run(run: Run, seed: int, by_key: dict[RunKey, Run]) -> Run:
    """The run whose weight norms ``run`` transfers, checked to train ``seed``."""
    if run.reference not in by_key:
        raise ValueError(f"Run {run.label!r} references unknown run {run.reference.label!r}.")
    reference = by_key[run.reference]
    if seed not in reference.seeds:
        raise ValueError(f"Run {run.label!r} needs seed {seed} of {reference.label!r}.")
    return reference


def _planned_run(run: Run, seed: int, workdir: str, source: PlannedRun | None, *,
                 data_dir: str | None, verbose: int) -> PlannedRun:
    """``run`` at ``seed`` with its key and directories; ``source``: its planned reference."""
    config = seeded(run.config, seed).replace(data_dir=data_dir, verbose=verbose)
    reference_key = None
    if source is not None:
        reference_key = source.key
        config = config.replace(weight_norm_reference=source.results_path)
    key = config_hash(config, run.search, reference_key, run.search_once)
    directory = os.path.join(workdir, RUNS_DIR, key)
    search_directory = os.path.join(directory, SEARCH_DIR) if run.search else None
    if run.search_once:  # the directory a search of the first seed alone would have
        first = config.replace(seed=run.seeds[0])
        search_directory = os.path.join(workdir, RUNS_DIR, config_hash(first, run.search),
                                        SEARCH_DIR)
    return PlannedRun(run, seed, config, key, directory, search_directory)


def finished_results(planned: PlannedRun) -> dict | None:
    """The results of a finished run, or None."""
    if not os.path.exists(planned.results_path):
        return None
    with open(planned.results_path) as f:
        results = json.load(f)
    if (results.get("status") != "finished"
            or len(results.get("epochs", [])) < planned.config.schedule.epochs):
        return None
    return results


def finished_searches(planned: Sequence[PlannedRun]) -> dict[str, list[dict | None]]:
    """{label: per seed, ``tfwd.tuning``'s search.json (grid, every trial's score, the best
    point) or None} for the runs with a grid search; a search shared by the seeds
    (``Run.search_once``) appears once per seed."""
    searches: dict[str, list[dict | None]] = {}
    for item in planned:
        if item.search_directory is None:
            continue
        path = os.path.join(item.search_directory, SEARCH_REPORT_FILE)
        report = None
        if os.path.exists(path):
            with open(path) as f:
                report = json.load(f)
        searches.setdefault(item.run.label, []).append(report)
    return searches


def _train_best_point(planned: PlannedRun) -> None:
    """``Run.search_once``: search with the first seed (reused once finished), then train
    this seed at the best point on the run's own split."""
    from tfwd.diagnostics import train_with_diagnostics
    from tfwd.tuning import run_search

    first = planned.config.replace(seed=planned.run.seeds[0])
    report = run_search(first, planned.search_directory, grid=dict(planned.run.search),
                        retrain_best=False)
    config = planned.config.replace(**report["best"]["values"])
    train_with_diagnostics(config, planned.directory)


def train_planned(planned: PlannedRun) -> dict:
    """Train (or continue) one run; runs with a grid search search it first."""
    import keras

    keras.backend.clear_session()
    if planned.run.search:
        if planned.run.search_once:
            _train_best_point(planned)
        else:
            from tfwd.tuning import run_search  # the paper scale only

            run_search(planned.config, planned.search_directory, grid=dict(planned.run.search))
        results = finished_results(planned)
        if results is None:
            raise RuntimeError(f"the search in {planned.search_directory} trained no model "
                               f"into {planned.results_path}.")
        return results
    from tfwd.diagnostics import train_with_diagnostics

    results = train_with_diagnostics(planned.config, planned.directory)
    if results["status"] == "diverged":  # reported as a failed run; its entry is incomplete
        raise RuntimeError(results["divergence"]["message"])
    return results


def _read_record(entry_dir: str) -> dict | None:
    path = os.path.join(entry_dir, RECORD_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _training_seconds(results: dict | None) -> float:
    return sum(e.get("wall_time_seconds", 0.0) for e in (results or {}).get("epochs", []))


def _outcome(results: dict | None) -> str:
    if not results:
        return "failed"
    final = results.get("final") or results["epochs"][-1]
    key = "test_accuracy" if "test_accuracy" in final else "validation_accuracy"
    return f"{key} {final.get(key, float('nan')):.4f}"


def selected(label: str, only: Sequence[str] | None) -> bool:
    """Whether ``only`` (shell patterns of run labels, None: every run) selects ``label``."""
    return only is None or any(fnmatch.fnmatchcase(label, pattern) for pattern in only)


def _is_complete(record: dict | None, signature: dict, entry_dir: str,
                 planned: Sequence[PlannedRun]) -> bool:
    """Whether the entry was reported on these very runs, all finished, and its file exists."""
    return bool(record and record.get("complete") and record.get("signature") == signature
                and os.path.exists(os.path.join(entry_dir, record["artifact"]["path"]))
                and all(finished_results(p) is not None for p in planned))


def _train_or_read(planned: Sequence[PlannedRun], only: Sequence[str] | None,
                   log: Callable[[str], None]) -> tuple[dict, float]:
    """({(run key, seed): results or None}, seconds spent training): finished runs are read,
    the selected unfinished ones trained, the others left out (None)."""
    by_run: dict[tuple[RunKey, int], dict | None] = {}
    trained_here = 0.0
    for index, item in enumerate(planned, 1):
        name = f"  [{index}/{len(planned)}] {item.run.label} seed {item.seed} ({item.key})"
        results = finished_results(item)
        if results is not None:
            log(f"{name}: finished earlier, {_outcome(results)}.")
        elif not selected(item.run.label, only):
            log(f"{name}: not finished and not selected (only={list(only)}), left out.")
        else:
            log(f"{name}: training {item.config.schedule.epochs} epoch(s) in {item.directory} ...")
            run_start = time.time()
            try:
                results = train_planned(item)
            except Exception as error:  # one failed run must not stop the other entries
                log(f"{name}: FAILED: {error!r}\n{traceback.format_exc(limit=3)}")
                results = None
            trained_here += time.time() - run_start
            log(f"{name}: {_outcome(results)} after {time.time() - run_start:.1f} s.")
        by_run[(item.run.key, item.seed)] = results
    return by_run, trained_here


def _write_record(experiment: Experiment, entry_dir: str, signature: dict,
                  planned: Sequence[PlannedRun], by_run: dict, artifact, *, start: float,
                  trained_here: float) -> dict:
    """artifact.json: what the entry ran, whether every run finished, and how long it took."""
    record = {
        "name": experiment.name,
        "citation": experiment.citation,
        "description": experiment.description,
        "signature": signature,
        "complete": all(value is not None for value in by_run.values()),
        "artifact": dataclasses.asdict(artifact),
        "seconds_this_invocation": time.time() - start,
        "seconds_training_this_invocation": trained_here,
        "training_seconds_of_runs": sum(_training_seconds(r) for r in by_run.values()),
        "runs": [{"label": p.run.label, "seed": p.seed, "key": p.key} for p in planned],
    }
    os.makedirs(entry_dir, exist_ok=True)
    with open(os.path.join(entry_dir, RECORD_FILE), "w") as f:
        json.dump(record, f, indent=2)
    return record


def run_experiment(experiment: Experiment, scale: Scale, workdir: str, *,
                   data_dir: str | None = None, verbose: int = 0,
                   log: Callable[[str], None] = print,
                   only: Sequence[str] | None = None) -> dict:
    """Train the entry's runs that are not finished, write its artifact; returns its record.

    ``only``: train only the runs whose label matches one of these shell patterns (e.g.
    ``"mnist/mlp/sb"``); the others are read if finished and otherwise left out of the report,
    which is then marked incomplete. Processes given disjoint patterns can share a workdir."""
    experiment.check_scale(scale)
    start = time.time()
    runs = list(experiment.runs(scale))
    planned = plan_runs(runs, workdir, data_dir=data_dir, verbose=verbose)
    entry_dir = os.path.join(workdir, experiment.name)
    signature = {"scale": scale.describe(), "runs": [p.key for p in planned]}
    record = _read_record(entry_dir)
    if _is_complete(record, signature, entry_dir, planned):
        log(f"{experiment.name}: complete, skipped ({record['artifact']['path']}).")
        return record
    log(f"{experiment.name} ({experiment.citation}): {len(planned)} run(s) at scale "
        f"{scale.describe()}.")
    by_run, trained_here = _train_or_read(planned, only, log)
    results = {run.label: [by_run[(run.key, seed)] for seed in run.seeds] for run in runs}
    context = ReportContext(experiment, scale, runs, results, entry_dir,
                            searches=finished_searches(planned))
    artifact = experiment.report(context)
    record = _write_record(experiment, entry_dir, signature, planned, by_run, artifact,
                           start=start, trained_here=trained_here)
    log(f"{experiment.name}: wrote {os.path.join(entry_dir, artifact.path)} "
        f"({'complete' if record['complete'] else 'INCOMPLETE'}, "
        f"{record['seconds_this_invocation']:.0f} s).")
    return record


def run_experiments(selection: str, scale: Scale, workdir: str, *, data_dir: str | None = None,
                    verbose: int = 0, log: Callable[[str], None] = print,
                    only: Sequence[str] | None = None) -> dict[str, dict]:
    """Run ``selection`` ("all" or comma-separated names) and rewrite index.md; ``only``
    restricts the training to some runs (``run_experiment``)."""
    experiments = registry.select(selection)
    for experiment in experiments:  # fail on a bad configuration before any training
        experiment.check_scale(scale)
        plan_runs(experiment.runs(scale), workdir)
    os.makedirs(workdir, exist_ok=True)
    records = {}
    with shared_input_pipelines():
        for number, experiment in enumerate(experiments, 1):
            log(f"[{number}/{len(experiments)}] {experiment.name}")
            records[experiment.name] = run_experiment(experiment, scale, workdir,
                                                      data_dir=data_dir, verbose=verbose, log=log,
                                                      only=only)
    write_index(workdir)
    return records


def write_index(workdir: str) -> str:
    """index.md: one line per registry entry, linking its artifact when it has been made."""
    lines = ["# Reproduction index", "",
             "One entry per table/figure of the two seed papers (registry: "
             "`tfwd.experiments.registry`). Each artifact states its scale and the published "
             "numbers beside the measured ones.", ""]
    for name, experiment in registry.EXPERIMENTS.items():
        record = _read_record(os.path.join(workdir, name))
        if record is None:
            lines.append(f"- {name} — {experiment.citation}: not run.")
            continue
        status = "complete" if record["complete"] else "INCOMPLETE (some runs failed)"
        lines.append(
            f"- [{name}]({name}/{record['artifact']['path']}) — {record['citation']}, scale "
            f"{record['signature']['scale']}, {len(record['runs'])} run(s), {status}; "
            f"training time of its runs {record['training_seconds_of_runs']:.0f} s. "
            f"Measured: {record['artifact']['summary']}")
    path = os.path.join(workdir, INDEX_FILE)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
