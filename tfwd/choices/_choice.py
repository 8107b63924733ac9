"""The base class of every choice: an ``enum.StrEnum`` that reads as its plain string.

A member equals, hashes, formats, JSON-serialises and (here) ``repr``-s as its value, so
``TrainConfig(optimizer=Optimizer.SGD)`` and ``TrainConfig(optimizer="sgd")`` save the same
config.json, hash to the same run key and print the same messages. Its ``name`` is the value
too: libraries read a string's ``.name`` where they accept dtype-like objects (Keras's
``standardize_dtype`` turned ``DtypePolicy.FLOAT32`` into ``"FLOAT32"``), so a member must
not look different from its string there. The Python identifier stays in ``_name_``.
"""
from __future__ import annotations

import enum


class Choice(enum.StrEnum):
    """One value of a concept; ``values()`` lists them as plain strings, in definition order."""

    def __repr__(self) -> str:
        # As the plain string: error messages and configs read the same whether a field holds
        # the member or the string a flag or a saved config gave.
        return repr(self._value_)

    @property
    def name(self) -> str:  # see the module docstring
        return self._value_

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)
