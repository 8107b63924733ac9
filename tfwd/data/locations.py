"""Where tfwd keeps prepared datasets on disk.

One owner for the data-directory rule, shared by the offline preparation command and the
input pipeline, so both always look in the same place.
"""
import os

DATA_DIR_ENV_VAR = "TFWD_DATA_DIR"


def default_data_dir() -> str:
    """Returns `$TFWD_DATA_DIR` if set, else TFDS's usual `~/tensorflow_datasets`."""
    return os.environ.get(DATA_DIR_ENV_VAR) or os.path.expanduser("~/tensorflow_datasets")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """Returns `data_dir` as an absolute path, or the default when it is None."""
    if data_dir is None:
        return default_data_dir()
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
