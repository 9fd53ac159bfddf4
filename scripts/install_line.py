#!/usr/bin/env python3
"""The README's install line, as `make release-check` runs it on the lowest and the highest Airflow.

    python scripts/install_line.py /abs/path/to/airflow_provider_smartmca-X.Y.Z-py3-none-any.whl

prints one tab-separated row per cell, the first and the last of the matrix (scripts/matrix.py):
the cell's name, its Python interpreter, its Airflow version, and the README's install line with the wheel in place of
the package name and the cell's constraints file in place of the README's. Run the line from the
repository root, as a user runs it from a clone or the sdist. Exits 1 when the README has no
install line of the documented form. ``tests/provider/test_docs_snippets.py`` checks that every
install line of the README and docs/guide/install.md has that form.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import CELLS, ROOT, Cell, find_python

NAME = "airflow-provider-smartmca"
#: The documented form; a comment may follow the command.
LINE = re.compile(rf"^(pip install {NAME} -c (requirements/airflow-\d+\.\d+\.txt))(?:\s+#.*)?$")
#: Where the form is documented: the README (PyPI's page) and the install guide.
PAGES = (ROOT / "README.md", ROOT / "docs" / "guide" / "install.md")


def install_lines(page: Path) -> list[str]:
    """Every line of ``page`` that starts ``pip install airflow-provider-smartmca -c``."""
    return [line for line in page.read_text().splitlines() if line.startswith(f"pip install {NAME} -c")]


def readme_line() -> tuple[str, str]:
    """The README's first install line (without its comment) and the constraints file it names."""
    for line in install_lines(PAGES[0]):
        if found := LINE.match(line):
            return found[1], found[2]
    raise SystemExit(f"README.md has no install line of the form {LINE.pattern!r}")


def commands(wheel: str) -> list[tuple[Cell, str]]:
    """For the lowest and the highest cell: the README's line for the wheel and the cell's pins."""
    line, constraints = readme_line()
    line = line.replace(f" {NAME} ", f" {wheel} ", 1)
    return [
        (cell, line.replace(constraints, str(cell.constraints.relative_to(ROOT))))
        for cell in (CELLS[0], CELLS[-1])
    ]


def main() -> int:
    (wheel,) = sys.argv[1:]
    for cell, command in commands(wheel):
        print(f"{cell.name}\t{find_python(cell.python)}\t{cell.airflow}\t{command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
