#!/usr/bin/env python3
"""The Airflow x Python test matrix: one venv per cell, from a checked-in constraints file.

    python scripts/matrix.py                 # run every cell, print the table (make matrix)
    python scripts/matrix.py af3.1-py3.12    # run some cells
    python scripts/matrix.py --list          # what each cell proves
    python scripts/matrix.py --compile       # re-resolve requirements/airflow-3.X.txt (needs PyPI)

Each cell's venv lives in .venv-matrix/<cell>; it is rebuilt only when its constraints file,
pyproject.toml or this script changes. Installing uses uv (pinned in requirements/matrix-tools.txt,
bootstrapped into .venv-matrix/_tools), which takes seconds where pip takes minutes.

Why one constraints file per Airflow minor: today's releases of Airflow's own dependencies break
older Airflow, and Airflow's constraint files cannot be fetched here. So each file is resolved as of
its Airflow release's date (uv's --exclude-newer), then only what the provider itself needs is
raised past that date (RAISED below), and the file is checked in. See docs or README for the table.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
MATRIX_DIR = ROOT / ".venv-matrix"
TOOLS_DIR = MATRIX_DIR / "_tools"

#: pytest-xdist workers, as `make test` runs them (TEST_WORKERS, from the Makefile): the suite
#: mostly waits, so more workers than cores pay off.
XDIST = ["-n", os.environ.get("TEST_WORKERS", "6"), "--dist", "worksteal"]
#: The unit suite, as `make test` runs it; e2e needs PostgreSQL and chromium and runs in `make e2e`.
SUITE = ["tests", "--ignore=tests/e2e", "-m", "not e2e", *XDIST]
#: Import-and-register smoke tests: imports, `airflow providers hooks`, connection type and form,
#: a DAG with every operator and the sensor parsed and serialized, a trigger run through this
#: Airflow's async connection API.
SMOKE = ["tests/provider", *XDIST]

#: Packages the provider needs newer than some Airflow release dates: name -> the --exclude-newer
#: date that admits the lowest version pyproject.toml asks for (and nothing newer).
RAISED = {
    # >=1.23.0 (get_async_connection/get_async_extra_dejson); 1.23.0 was uploaded 2026-10-24.
    "apache-airflow-providers-common-compat": "2026-10-25",
}


@dataclass(frozen=True)
class Cell:
    """One venv: an Airflow release on a Python, the tests it runs, and what passing proves."""

    name: str
    airflow: str
    python: str
    #: --exclude-newer for resolving its constraints: the day after the Airflow release.
    resolved_as_of: str
    tests: tuple[str, ...]
    proves: str
    #: Requirements resolved into this cell's constraints besides the provider's own.
    extras: tuple[str, ...] = ()

    @property
    def minor(self) -> str:
        return ".".join(self.airflow.split(".")[:2])

    @property
    def constraints(self) -> Path:
        return REQUIREMENTS / f"airflow-{self.minor}.txt"


CELLS = [
    Cell(
        "af3.0-py3.11",
        "3.0.3",
        "3.11",
        "2025-07-15",
        tuple(SUITE),
        "lowest Airflow and lowest Python: the unit suite and the example DAGs (dag.test)",
    ),
    Cell(
        "af3.1-py3.12",
        "3.1.8",
        "3.12",
        "2026-03-12",
        tuple(SMOKE),
        "Airflow 3.1: imports, registration, DAG parsing, trigger connection API (smoke)",
    ),
    Cell(
        "af3.2-py3.12",
        "3.2.2",
        "3.12",
        "2026-05-30",
        tuple(SMOKE),
        "Airflow 3.2: imports, registration, DAG parsing, trigger connection API (smoke)",
    ),
    Cell(
        "af3.3-py3.13",
        "3.3.2",
        "3.13",
        "2026-09-18",
        # `make test` runs the whole suite on Airflow 3.3 already (Python 3.11): here the smoke
        # tests, the example DAGs and the hook's suite prove Python 3.13, in a third of the time.
        (
            *SMOKE,
            "tests/operators/test_example_dags.py",
            "tests/operators/test_openlineage.py",
            "tests/hook",
        ),
        "newest Airflow and highest Python: smoke, the hook's suite, the example DAGs (dag.test) and "
        "the OpenLineage facets (with the OpenLineage provider; the other cells run without it)",
        ("apache-airflow-providers-openlineage",),
    ),
]


def log(message: str) -> None:
    print(f"[matrix] {message}", flush=True)


def find_python(version: str) -> str:
    """An interpreter for ``X.Y``: ``pythonX.Y`` on PATH if it runs, else pyenv's newest X.Y.*."""
    candidates = []
    if found := shutil.which(f"python{version}"):
        candidates.append(found)
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"),
        key=lambda p: [int(x) for x in Path(p).parents[1].name.split(".") if x.isdigit()],
        reverse=True,
    )
    for candidate in candidates:
        # A pyenv shim exists for every installed version but fails unless that version is active.
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise SystemExit(f"[matrix] no Python {version} found (on PATH or under pyenv)")


def uv() -> str:
    """The pinned uv, installed once into .venv-matrix/_tools with the pip of this Python."""
    exe = TOOLS_DIR / "bin" / "uv"
    pin = REQUIREMENTS / "matrix-tools.txt"
    stamp = TOOLS_DIR / ".installed"
    if exe.exists() and stamp.exists() and stamp.read_text() == pin.read_text():
        return str(exe)
    log(f"installing uv into {TOOLS_DIR.relative_to(ROOT)}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOLS_DIR)], check=True)
    subprocess.run(
        [str(TOOLS_DIR / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(pin)], check=True
    )
    stamp.write_text(pin.read_text())
    return str(exe)


def fingerprint(cell: Cell) -> str:
    """What a cell's venv is built from; a change rebuilds it."""
    digest = hashlib.sha256()
    # __init__.py holds the version, which the editable install's metadata records.
    for path in (
        cell.constraints,
        ROOT / "pyproject.toml",
        ROOT / "airflow_provider_smartmca" / "__init__.py",
    ):
        digest.update(path.read_bytes())
    digest.update(cell.python.encode())
    return digest.hexdigest()


def build_venv(cell: Cell) -> Path:
    """Create (or reuse) .venv-matrix/<cell> with the cell's pins and the provider, editable."""
    venv = MATRIX_DIR / cell.name
    stamp = venv / ".matrix-fingerprint"
    wanted = fingerprint(cell)
    if stamp.exists() and stamp.read_text() == wanted and (venv / "bin" / "airflow").exists():
        log(f"{cell.name}: reusing {venv.relative_to(ROOT)}")
        return venv
    tool = uv()
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    log(f"{cell.name}: creating {venv.relative_to(ROOT)} (Python {cell.python}, Airflow {cell.airflow})")
    subprocess.run(
        [tool, "venv", "--quiet", "--clear", "--python", find_python(cell.python), str(venv)], check=True
    )
    # One resolution: every package pinned by the constraints file, plus the provider (editable),
    # whose own requirements must be satisfied by those pins or the install fails. Bytecode is
    # compiled once here (about 6 s) because each `airflow` process the tests start then imports
    # about 2 s faster (PYTHONDONTWRITEBYTECODE keeps it from being written later).
    subprocess.run(
        [
            tool,
            "pip",
            "install",
            "--quiet",
            "--compile-bytecode",
            "-r",
            str(cell.constraints),
            "-e",
            str(ROOT),
        ],
        check=True,
        env=env,
        cwd=ROOT,
    )
    stamp.write_text(wanted)
    return venv


def cell_env(venv: Path) -> dict[str, str]:
    """A clean environment: nothing from the caller's Airflow or venv leaks into the cell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "PYTHONPATH"}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_airflow_starts(venv: Path, env: dict[str, str]) -> None:
    """`airflow version` and `airflow db migrate` on a throwaway AIRFLOW_HOME."""
    with tempfile.TemporaryDirectory(prefix="matrix-airflow-home-") as home:
        env = {**env, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        airflow = str(venv / "bin" / "airflow")
        version = subprocess.run(
            [airflow, "version"], check=True, env=env, capture_output=True, text=True, timeout=300
        )
        log(f"{venv.name}: airflow version {version.stdout.strip().splitlines()[-1]}")
        subprocess.run(
            [airflow, "db", "migrate"], check=True, env=env, stdout=subprocess.DEVNULL, timeout=600
        )


def run_cell(cell: Cell) -> tuple[bool, float, float]:
    """Build and test one cell; returns (passed, setup seconds, test seconds)."""
    start = time.monotonic()
    try:
        venv = build_venv(cell)
        env = cell_env(venv)
        check_airflow_starts(venv, env)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log(f"{cell.name}: setup failed: {exc}")
        return False, time.monotonic() - start, 0.0
    setup = time.monotonic() - start
    log(f"{cell.name}: pytest {' '.join(cell.tests)}")
    start = time.monotonic()
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", *cell.tests, "-q", "-p", "no:cacheprovider"],
        env=env,
        cwd=ROOT,
    )
    # pytest's exit code 5 (nothing collected) is a failure here: a cell must prove something.
    return proc.returncode == 0, setup, time.monotonic() - start


def compile_constraints(cells: list[Cell]) -> None:
    """Resolve each cell's constraints file as of its Airflow release (plus RAISED), with uv."""
    tool = uv()
    for minor in dict.fromkeys(c.minor for c in cells):
        cell = next(c for c in cells if c.minor == minor)
        command = [
            tool, "pip", "compile", "--quiet", "--python-version", cell.python,
            "--exclude-newer", cell.resolved_as_of,
            *[f"--exclude-newer-package={name}={date}" for name, date in RAISED.items()],
            "--annotation-style", "line",
            "--custom-compile-command", f"python scripts/matrix.py --compile {cell.name}",
            # The Airflow pin (and the cell's extras) come on stdin ("-"), so no temporary path lands
            # in the annotations.
            "pyproject.toml", "requirements/matrix.in", "-",
            "-o", str(cell.constraints.relative_to(ROOT)),
        ]  # fmt: skip
        log(f"{cell.name}: resolving {cell.constraints.relative_to(ROOT)} as of {cell.resolved_as_of}")
        pins = "".join(f"{line}\n" for line in (f"apache-airflow=={cell.airflow}", *cell.extras))
        subprocess.run(command, check=True, cwd=ROOT, input=pins, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cells", nargs="*", help="cell names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the cells and what each proves")
    parser.add_argument("--compile", action="store_true", help="re-resolve the constraints files")
    args = parser.parse_args()
    by_name = {c.name: c for c in CELLS}
    unknown = [n for n in args.cells if n not in by_name]
    if unknown:
        parser.error(f"unknown cell(s) {unknown}; known: {list(by_name)}")
    cells = [by_name[n] for n in args.cells] or CELLS
    if args.list:
        for c in cells:
            print(f"{c.name:14} Airflow {c.airflow:7} Python {c.python:5} {c.proves}")
        return 0
    if args.compile:
        compile_constraints(cells)
        return 0

    results = []
    for cell in cells:
        passed, setup, tests = run_cell(cell)
        results.append((cell, passed, setup, tests))
        log(f"{cell.name}: {'PASS' if passed else 'FAIL'} (setup {setup:.0f} s, tests {tests:.0f} s)")

    width = max(len(c.proves) for c in cells)
    print()
    print(f"{'cell':14} {'airflow':8} {'proves':{width}} {'result':6} {'setup s':>7} {'tests s':>7}")
    for cell, passed, setup, tests in results:
        result = "PASS" if passed else "FAIL"
        print(f"{cell.name:14} {cell.airflow:8} {cell.proves:{width}} {result:6} {setup:7.0f} {tests:7.0f}")
    total = sum(s + t for _, _, s, t in results)
    failed = sum(not passed for _, passed, _, _ in results)
    print(f"{len(results)} cells in {total:.0f} s")
    print(f"matrix: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
