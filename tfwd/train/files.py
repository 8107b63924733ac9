"""JSON files of runs and searches: always valid JSON, never half a file after a kill."""
from __future__ import annotations

import json
import math
import os

NONFINITE_KEY = "nonfinite_values"


def replace_nonfinite(payload, where: str = "") -> tuple[object, list[str]]:
    """(``payload`` with every NaN/±inf float replaced by None, the places replaced).

    Places are written like ``epochs[0].train_loss``. JSON has no NaN or infinity: Python's
    ``json`` would write the literals ``NaN``/``Infinity``, which other readers reject.
    """
    if isinstance(payload, float) and not math.isfinite(payload):
        return None, [where or "<value>"]
    if isinstance(payload, dict):
        clean, places = {}, []
        for key, value in payload.items():
            clean[key], inner = replace_nonfinite(value, f"{where}.{key}" if where else str(key))
            places += inner
        return clean, places
    if isinstance(payload, (list, tuple)):
        clean, places = [], []
        for index, value in enumerate(payload):
            item, inner = replace_nonfinite(value, f"{where}[{index}]")
            clean.append(item)
            places += inner
        return clean, places
    return payload, []


def finite_payload(payload):
    """``payload`` ready for strict JSON: non-finite numbers as null, and, for a dict,
    their places listed under ``NONFINITE_KEY`` (omitted when there are none)."""
    clean, places = replace_nonfinite(payload)
    if isinstance(clean, dict):
        clean.pop(NONFINITE_KEY, None)
        if places:
            clean[NONFINITE_KEY] = places
    return clean


def write_json_atomically(path: str, payload, **dump_options) -> None:
    """Write ``finite_payload(payload)`` to ``path`` through a temporary file and a rename.

    The temporary name carries the process id: processes of a distributed search share files.
    """
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(finite_payload(payload), f, allow_nan=False, **dump_options)
    os.replace(temporary, path)
