"""JSON files of a search, written so that a killed process never leaves half a file."""
from __future__ import annotations

import json
import os


def write_json_atomically(path: str, payload, **dump_options) -> None:
    """Write ``payload`` to ``path`` through a temporary file and an atomic rename."""
    temporary = f"{path}.{os.getpid()}.tmp"  # processes of a distributed search share files
    with open(temporary, "w") as f:
        json.dump(payload, f, **dump_options)
    os.replace(temporary, path)
