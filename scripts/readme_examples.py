"""Copy the tested snippet files into the README, which cannot include files (PyPI renders it as is).

A README code block right after a line ``<!-- from docs/snippets/<name>.py -->`` is the content of
that file. ``python scripts/readme_examples.py`` rewrites those blocks; ``--check`` only reports
the blocks that differ (exit 1). ``tests/provider/test_docs_snippets.py`` runs the check and
parses each snippet file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- from (docs/snippets/[\w.-]+\.py) -->$")


def generate(text: str, root: Path = ROOT) -> str:
    """``text`` (a README) with each marked block replaced by its file."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        found = MARKER.match(lines[i].rstrip("\n"))
        i += 1
        if not found:
            continue
        if i >= len(lines) or not lines[i].startswith("```"):
            raise ValueError(f"{found.group(0)} is not followed by a code block")
        out.append(lines[i])
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip("\n") == "```"), None)
        if end is None:
            raise ValueError(f"the code block after {found.group(0)} is not closed")
        source = (root / found.group(1)).read_text()
        out.append(source if source.endswith("\n") else source + "\n")
        out.append(lines[end])
        i = end + 1
    return "".join(out)


def main(argv: list[str]) -> int:
    text = README.read_text()
    new = generate(text)
    if new == text:
        return 0
    if "--check" in argv:
        print("README.md differs from docs/snippets/: run python scripts/readme_examples.py")
        return 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
