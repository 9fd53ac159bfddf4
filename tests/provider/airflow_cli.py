"""Run the ``airflow`` CLI of the venv under test and read its ``--output json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: The CLI beside the interpreter running the tests (each matrix cell has its own).
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def json_out(stdout: str) -> Any:
    """The CLI's ``--output json`` line: some versions print log lines to stdout before it."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise AssertionError(f"no JSON in {stdout[-2000:]!r}")
