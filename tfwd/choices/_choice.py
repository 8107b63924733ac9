"""The base class of every concept's values: class attributes that are plain strings.

``Optimizer.SGD`` *is* ``"sgd"`` — the string a flag, a saved config.json or a run key holds —
not an enum member standing for it. An ``enum.StrEnum`` member compares equal to its string,
but libraries tell them apart: h5py refused a model named by one when ``model.save`` wrote its
attributes, and Keras's ``standardize_dtype`` read a member's ``.name`` ("FLOAT32") instead of
its value. Plain strings keep every saved file, message and library call exactly as before.
"""
from __future__ import annotations


class Choice:
    """A concept: its values as UPPER_CASE class attributes; ``values()`` in definition order."""

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(value for name, value in vars(cls).items() if name.isupper())

    @classmethod
    def check(cls, value, name: str) -> None:
        """Raise ValueError naming the option ``name`` unless ``value`` is one of ``values()``."""
        if value not in cls.values():
            raise ValueError(f"{name} must be one of {cls.values()}, got {value!r}.")
