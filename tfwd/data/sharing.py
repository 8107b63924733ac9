"""Share decoded splits and built pipelines between the many runs of one process.

A search's trials and an experiment invocation's runs ask for the same splits again and again,
and ``tfwd.data.input_pipeline`` decodes its split from TFDS on every call (about 5 s for
MNIST's 60,000 images on a busy CPU, far more for CIFAR). A ``PipelineCache`` keeps

* each decoded (data directory, dataset, split), and
* each built pipeline, by its arguments,

and ``tfwd.data.input_pipeline`` consults the cache that is active
(``shared_input_pipelines()``, a context manager) — nothing else changes, no module
attribute is replaced. Both cached things are pure functions of their arguments
(``tfwd.data.pipeline``: epoch k depends only on seed and k), so sharing changes no number:
results are identical with and without it.

    with shared_input_pipelines():            # a new cache, or the one already active
        train(config_a); train(config_b)      # the second run reuses the first's pipelines
"""
from __future__ import annotations

import contextlib
from typing import Callable, Hashable, Iterator, TypeVar

T = TypeVar("T")

# The caches of the open ``shared_input_pipelines`` blocks, innermost last. Process-wide, not
# per thread: every thread of the process shares, as the runs of one process do.
_ACTIVE: list[PipelineCache] = []


class PipelineCache:
    """Decoded splits and built pipelines of one process, by their identifying arguments."""

    def __init__(self):
        self._splits: dict[Hashable, object] = {}
        self._pipelines: dict[Hashable, object] = {}

    def split(self, key: Hashable, decode: Callable[[], T]) -> T:
        """The split decoded for ``key`` (data directory, dataset, split), decoding it once."""
        if key not in self._splits:
            self._splits[key] = decode()
        return self._splits[key]

    def pipeline(self, key: Hashable, build: Callable[[], T]) -> T:
        """The pipeline built for ``key`` (its arguments), building it once."""
        if key not in self._pipelines:
            self._pipelines[key] = build()
        return self._pipelines[key]


def active_cache() -> PipelineCache | None:
    """The cache ``tfwd.data.input_pipeline`` consults now, or None (no sharing)."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def shared_input_pipelines(cache: PipelineCache | None = None) -> Iterator[PipelineCache]:
    """Within the block, ``tfwd.data.input_pipeline`` shares through ``cache``.

    ``cache`` None: the cache already active (blocks nest, e.g. a search inside an experiment
    invocation, and share the outer one), else a new one, dropped at the end of the block."""
    if cache is None:
        cache = active_cache() or PipelineCache()
    _ACTIVE.append(cache)
    try:
        yield cache
    finally:
        _ACTIVE.pop()
