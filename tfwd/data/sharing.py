"""Share decoded splits and built pipelines between the many runs of one process.

A search's trials and an experiment invocation's runs ask for the same splits again and again,
and ``tfwd.data.input_pipeline`` decodes its split from TFDS on every call (about 5 s for
MNIST's 60,000 images on a busy CPU, far more for CIFAR). Inside ``shared_input_pipelines()``

* ``tfwd.data.sources.load_split`` decodes each (data directory, dataset, split) once, and
* ``tfwd.data.input_pipeline`` returns, for arguments seen before, the pipeline built the
  first time.

Both are pure functions of their arguments (``tfwd.data.pipeline``: epoch k depends only on
seed and k), so sharing changes no number: results are identical with and without it. The
block swaps the module attributes, because ``tfwd.train`` and ``tfwd.diagnostics`` look the
functions up there on every call.
"""
from __future__ import annotations

import contextlib
import functools

import tfwd.data
from tfwd.data import sources


@contextlib.contextmanager
def _swapped(module, name: str, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _memoized(function, key):
    results = {}

    @functools.wraps(function)
    def shared(*args, **kwargs):
        k = key(*args, **kwargs)
        if k not in results:
            results[k] = function(*args, **kwargs)
        return results[k]

    return shared


@contextlib.contextmanager
def shared_input_pipelines():
    """Within the block, each split is decoded once and equal pipeline requests share one."""
    decode_once = _memoized(
        sources.load_split, lambda builder, info, split: (str(builder.data_dir), info.name, split)
    )
    build_once = _memoized(
        tfwd.data.input_pipeline,
        lambda name, split, **options: (name, split, tuple(sorted(options.items()))),
    )
    with _swapped(sources, "load_split", decode_once), \
            _swapped(tfwd.data, "input_pipeline", build_once):
        yield
