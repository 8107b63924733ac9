"""A decoded copy of a TFDS split, kept beside its files, so a run reads it in a fraction of a second.

TFDS stores images PNG-encoded and parses examples one by one: reading MNIST's 60,000 training
images took 8–21 s on the shared 2-core machine, most of it decoding PNGs. The first read of a
split therefore also writes ``decoded-<split>.npz`` (uncompressed numpy arrays, MNIST's train
split 48 MB) into the dataset's folder; later reads load that file. It is used only while its
recorded fingerprint — the name, size and modification time of every file of the split — still
matches, so a re-prepared dataset is decoded afresh. Where the folder is not writable, or the
split has no files of its own (``tfds.testing.mock_data``), nothing is cached.
"""
from __future__ import annotations

import json
import os
import pathlib
import zipfile

import numpy as np


def _split_files(dataset_path: pathlib.Path, dataset_name: str, split: str) -> list[pathlib.Path]:
    return sorted(dataset_path.glob(f"{dataset_name}-{split}.*"))


def fingerprint(dataset_path, dataset_name: str, split: str) -> str | None:
    """The split's files as JSON [[name, bytes, mtime_ns], ...]; None when it has none."""
    files = _split_files(pathlib.Path(dataset_path), dataset_name, split)
    if not files:
        return None
    return json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])


def cache_path(dataset_path, split: str) -> pathlib.Path:
    return pathlib.Path(dataset_path) / f"decoded-{split}.npz"


def load(dataset_path, dataset_name: str, split: str) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``split``, or None when there is no valid cache."""
    expected = fingerprint(dataset_path, dataset_name, split)
    path = cache_path(dataset_path, split)
    if expected is None or not path.is_file():
        return None
    try:
        with np.load(path) as cached:
            if str(cached["fingerprint"]) != expected:
                return None
            return {key: cached[key] for key in cached.files if key != "fingerprint"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged cache is re-made
        return None


def save(dataset_path, dataset_name: str, split: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache of ``split`` atomically; silently skipped where it cannot be written."""
    stamp = fingerprint(dataset_path, dataset_name, split)
    path = cache_path(dataset_path, split)
    if stamp is None or not os.access(path.parent, os.W_OK):
        return
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(temporary, fingerprint=np.array(stamp), **arrays)
        os.replace(temporary, path)
    except OSError:  # a full disk costs speed only: the data were read correctly
        temporary.unlink(missing_ok=True)
