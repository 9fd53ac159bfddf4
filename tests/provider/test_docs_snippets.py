"""Docs that cannot drift: every README and docs/ code block that defines a DAG or a test is run.

A DAG block must yield a DAG when parsed; a test block runs here, with the plugin's fixtures, a
``dags/onboard_deal.py`` beside it (the shipped onboarding example). A block right after a line
``<!-- snippet: fragment -->`` is a fragment and skipped. The README's DAG blocks are copies of
``docs/snippets/`` (``scripts/readme_examples.py``), and every ``docs/...`` path that code or docs
name exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?:python|py|\{code-block\} python)\s*$")
FRAGMENT = "<!-- snippet: fragment -->"
DEFINES_DAG = re.compile(r"@dag\b|\bDAG\(")
DEFINES_TEST = re.compile(r"^def test_", re.MULTILINE)


def code_blocks(page: Path) -> list[tuple[str, str]]:
    """``(where, code)`` of each Python block of ``page`` not marked as a fragment."""
    lines = page.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if not FENCE.match(line) or (i and lines[i - 1].strip() == FRAGMENT):
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append((f"{page.relative_to(ROOT)}:{i + 1}", "\n".join(lines[i + 1 : end]) + "\n"))
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page)]
DAG_BLOCKS = [b for b in BLOCKS if DEFINES_DAG.search(b[1])]
TEST_BLOCKS = [b for b in BLOCKS if DEFINES_TEST.search(b[1])]


def test_the_docs_have_dag_and_test_blocks() -> None:
    wheres = [where for where, _ in DAG_BLOCKS + TEST_BLOCKS]
    assert any(w.startswith("README.md") for w in wheres) and any(w.startswith("docs/") for w in wheres)


@pytest.mark.parametrize(("where", "code"), DAG_BLOCKS, ids=[w for w, _ in DAG_BLOCKS])
def test_a_dag_block_yields_a_dag(where: str, code: str, tmp_path: Path) -> None:
    from airflow_provider_smartmca.testing.dag_runner import _parse

    path = tmp_path / "snippet.py"
    path.write_text(code)
    assert _parse(path), f"{where} defines no DAG (a @dag function never called?)"


@pytest.mark.parametrize(("where", "code"), TEST_BLOCKS, ids=[w for w, _ in TEST_BLOCKS])
def test_a_test_block_passes(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "dags").mkdir()
    example = ROOT / "airflow_provider_smartmca" / "examples" / "example_smartmca_onboard_deal.py"
    shutil.copyfile(example, tmp_path / "dags" / "onboard_deal.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "0.05")
    namespace: dict[str, Any] = {"__name__": "snippet"}
    exec(compile(code, where, "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert tests
    for test in tests:
        test(**{name: request.getfixturevalue(name) for name in inspect.signature(test).parameters})


def _readme_examples() -> Any:
    spec = importlib.util.spec_from_file_location("readme_examples", ROOT / "scripts" / "readme_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_examples_are_the_tested_snippet_files() -> None:
    readme = (ROOT / "README.md").read_text()
    module = _readme_examples()
    assert module.generate(readme) == readme, "run: python scripts/readme_examples.py"
    assert readme.count("<!-- from docs/snippets/") == len(list((ROOT / "docs" / "snippets").glob("*.py")))


def test_every_docs_path_that_code_and_docs_name_exists() -> None:
    texts = [*PAGES, ROOT / "CONTRIBUTING.md", *(ROOT / "airflow_provider_smartmca").rglob("*.py")]
    texts += [*(ROOT / "scripts").glob("*.py")]
    named = {
        (path, match)
        for path in texts
        for match in re.findall(r"(?<![\w./])docs/[\w./-]*\w\.(?:md|rst|py)", path.read_text())
    }
    missing = sorted(f"{p.relative_to(ROOT)} names {m}" for p, m in named if not (ROOT / m).exists())
    assert not missing, missing


def test_docs_include_the_shipped_examples_and_every_include_resolves() -> None:
    included: set[Path] = set()
    for page in PAGES[1:]:
        text = page.read_text()
        for target, options in re.findall(r"```\{literalinclude\} (\S+)\n((?::[\w-]+:.*\n)*)", text):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.relative_to(ROOT)} includes {target}, which does not exist"
            included.add(path)
            for marker in re.findall(r"^:(?:start-after|end-before): (.+)$", options, re.MULTILINE):
                assert marker in path.read_text(), f"{page.relative_to(ROOT)}: {marker!r} not in {target}"
    examples = set((ROOT / "airflow_provider_smartmca" / "examples").glob("example_*.py"))
    assert examples <= included, sorted(p.name for p in examples - included)


def test_the_readme_install_line_is_the_one_release_check_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    install_line = importlib.import_module("install_line")
    readme_lines = install_line.install_lines(ROOT / "README.md")
    assert readme_lines and install_line.LINE.match(readme_lines[0]), readme_lines
    line, _ = install_line.readme_line()
    ran = install_line.commands("/tmp/the.whl")
    files = [cell.constraints.relative_to(ROOT).as_posix() for cell, _ in ran]
    assert files == ["requirements/airflow-3.0.txt", "requirements/airflow-3.3.txt"]
    assert [command for _, command in ran] == [f"pip install /tmp/the.whl -c {f}" for f in files]
    # Every documented install line is the README's, with its own (existing) constraints file, and
    # the lowest and the highest Airflow's lines are documented.
    documented = [
        m
        for page in install_line.PAGES
        for m in map(install_line.LINE.match, install_line.install_lines(page))
    ]
    assert all(documented) and all((ROOT / m[2]).is_file() for m in documented)
    assert {m[1].replace(m[2], "X") for m in documented} == {line.replace(files[-1], "X")}
    assert set(files) <= {m[2] for m in documented}
