"""One decode of each data split per search process, shared by all its trials.

``tfwd.data.input_pipeline`` decodes its split from TFDS on every call (about 5 s for MNIST's
60,000 images on a busy CPU, far more for CIFAR), and every trial of a search asks for the
same ``train`` and ``validation`` pipelines. Inside ``reuse_input_pipelines()`` a call with
arguments seen before returns the pipeline built the first time. A pipeline is a pure function
of its arguments (``tfwd.data.pipeline``: epoch k depends only on seed and k), so sharing it
changes no number; the search's results are identical with and without it.

It wraps ``tfwd.data.input_pipeline`` for the duration of the block, since ``tfwd.train`` and
``tfwd.diagnostics`` look the function up there on every call.
"""
from __future__ import annotations

import contextlib
import functools

import tfwd.data


@contextlib.contextmanager
def reuse_input_pipelines():
    """Within the block, equal ``tfwd.data.input_pipeline`` calls share one pipeline."""
    build = tfwd.data.input_pipeline
    pipelines = {}

    @functools.wraps(build)
    def shared_input_pipeline(name, split, **options):
        key = (name, split, tuple(sorted(options.items())))
        if key not in pipelines:
            pipelines[key] = build(name, split, **options)
        return pipelines[key]

    tfwd.data.input_pipeline = shared_input_pipeline
    try:
        yield
    finally:
        tfwd.data.input_pipeline = build
