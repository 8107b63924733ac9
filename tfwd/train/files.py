"""JSON files of runs and searches, written so that a killed process never leaves half a file."""
from __future__ import annotations

import json
import os


def write_json_atomically(path: str, payload, **dump_options) -> None:
    """Write ``payload`` to ``path`` through a temporary file and an atomic rename.

    The temporary name carries the process id: processes of a distributed search share files.
    """
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(payload, f, **dump_options)
    os.replace(temporary, path)
