#!/usr/bin/env bash
# `make release-check`: build the sdist and the wheel, check them as PyPI would, then run the
# README's install line with the wheel in fresh venvs, on the lowest and on the highest supported
# Airflow (each on its matrix cell's Python, scripts/install_line.py), and use the install as a user
# would. The built files stay in dist/. Exits non-zero on the first failed check.
#
# Environment: PY (has build, twine, trove-classifiers: requirements/docs.in; default .venv/bin/python).
# Nothing of the caller's PYTHONPATH or AIRFLOW_* reaches the fresh venvs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=${PY:-.venv/bin/python}
work=$(mktemp -d -t smartmca-release-XXXXXX)
trap 'rm -rf "$work"' EXIT
started=$SECONDS
step() { printf '\n== [%3ds] %s\n' $((SECONDS - started)) "$*"; }

step "build the sdist, then the wheel from the sdist (proves the sdist is complete)"
rm -rf dist
"$PY" -m build --outdir dist . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
sdist=$(ls dist/*.tar.gz)
wheel=$(ls dist/*.whl)
ls -l dist

step "twine check --strict (the README renders on PyPI)"
"$PY" -m twine check --strict dist/*

step "metadata and contents"
"$PY" - "$sdist" "$wheel" <<'EOF'
import re
import sys
import tarfile
import zipfile
from email.parser import HeaderParser

import trove_classifiers

sys.path.insert(0, ".")
from airflow_provider_smartmca import __version__  # noqa: E402

sdist_path, wheel_path = sys.argv[1:]
problems = []
with zipfile.ZipFile(wheel_path) as whl:
    wheel_names = whl.namelist()
    dist_info = next(n.split("/")[0] for n in wheel_names if n.endswith(".dist-info/METADATA"))
    meta = HeaderParser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
with tarfile.open(sdist_path) as tar:
    sdist_names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]


def expect(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        problems.append(what)


expect(meta["Version"] == __version__, f"version {meta['Version']} == __version__ {__version__}")
# The CHANGELOG's newest dated release is this version (a .devN version is not checked).
changelog = open("CHANGELOG.md", encoding="utf-8").read()
released = re.findall(r"^## \[(\d[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", changelog, re.M)
expect(".dev" in __version__ or (released[:1] and released[0][0] == __version__),
       f"the CHANGELOG's newest dated release {released[:1]} is __version__ {__version__}")
expect(meta["License-Expression"] == "Apache-2.0", f"License-Expression {meta['License-Expression']}")
expect(meta.get_all("License-File") == ["LICENSE"], f"License-File {meta.get_all('License-File')}")
bad = [c for c in meta.get_all("Classifier") or [] if c not in trove_classifiers.classifiers]
expect(not bad, f"every classifier is a known trove classifier {bad or ''}")
expect(f"{dist_info}/licenses/LICENSE" in wheel_names, "LICENSE in the wheel")
expect("LICENSE" in sdist_names, "LICENSE in the sdist")
for name in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md", "docs/conf.py", "docs/index.md"):
    expect(name in sdist_names, f"{name} in the sdist")
examples = "airflow_provider_smartmca/examples/example_smartmca_onboard_deal.py"
expect(examples in wheel_names and examples in sdist_names, "example DAGs in both")
stray = [n for n in sdist_names if n.split("/")[0] in ("tests", "benchmarks", "scripts", ".ci", "build", "dist")]
stray += [n for n in sdist_names + wheel_names if "__pycache__" in n or n.endswith(".pyc")]
expect(not stray, f"nothing stray in the sdist (tests, benchmarks, scripts, caches) {stray[:5] or ''}")
readme = meta.get_payload()
expect(len(readme.encode()) <= 16000, f"README (the PyPI page) is {len(readme.encode())} bytes <= 16000")
relative = [t for t in re.findall(r"\]\(([^)\s]+)", readme) + re.findall(r"src=[\"']([^\"']+)", readme)
            if not t.startswith(("https://", "http://", "#"))]
expect(not relative, f"no relative link or image in the README (they break on PyPI) {relative or ''}")
sys.exit(1 if problems else 0)
EOF

# A user's shell: none of the caller's PYTHONPATH (it would import the repository's package) or Airflow.
unset PYTHONPATH
while read -r name; do unset "$name"; done < <(compgen -e | grep '^AIRFLOW' || true)
cp "$repo/$wheel" "$work/"
"$PY" scripts/install_line.py "$work/$(basename "$wheel")" >"$work/cells.tsv"

# Use the wheel installed in venv $1 as a user would, from the temp dir (nothing below may read the
# repository).
use_as_a_user() {
    local venv=$1
    cd "$work"
    step "import the installed package (not the repository's)"
    "$venv/bin/python" - <<'EOF'
import importlib.metadata
import pathlib
import sys

import airflow_provider_smartmca
from airflow_provider_smartmca.hooks import SmartMCAHook
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from airflow_provider_smartmca.sensors import ExecutionSensor
from airflow_provider_smartmca.testing import Emulator
from airflow_provider_smartmca.triggers import ExecutionTrigger

where = pathlib.Path(airflow_provider_smartmca.__file__)
assert "site-packages" in where.parts, f"imported from {where}, not from the installed wheel"
dist = importlib.metadata.distribution("airflow-provider-smartmca")
assert not (dist.read_text("direct_url.json") or "").count('"editable": true'), "editable install"
assert dist.version == airflow_provider_smartmca.__version__
print("ok    imported", dist.version, "from", where.parent)
print("ok   ", ", ".join(c.__name__ for c in (SmartMCAHook, TriggerWorkflowOperator, ExecutionSensor, ExecutionTrigger, Emulator)))
EOF

    step "the installed example DAGs parse"
    EXPECTED_EXAMPLES="$(cd "$repo/airflow_provider_smartmca/examples" && ls example_*.py)" "$venv/bin/python" - <<'EOF'
import os
from pathlib import Path

import airflow_provider_smartmca.examples as examples
from airflow_provider_smartmca.testing.dag_runner import _parse

# One DAG per example file of the source tree (each example's dag_id is its file name), so an
# example missing from the wheel, or one that stopped defining its DAG, fails here.
folder = Path(examples.__path__[0])
names = sorted(name.removesuffix(".py") for name in os.environ["EXPECTED_EXAMPLES"].split())
assert sorted(p.stem for p in folder.glob("example_*.py")) == names, list(folder.iterdir())
found = {name: sorted(_parse(folder / f"{name}.py")) for name in names}
assert all(ids == [name] for name, ids in found.items()), found
print("ok    ", names)
EOF

    step "Airflow registers the provider (temp AIRFLOW_HOME)"
    "$venv/bin/airflow" providers get airflow-provider-smartmca -o plain | tee "$work/get.txt"
    grep -q "airflow-provider-smartmca" "$work/get.txt"
    "$venv/bin/airflow" providers hooks -o plain | tee "$work/hooks.txt" | grep -i smartmca
    grep -i smartmca "$work/hooks.txt" | grep -q "SmartMCAHook" || { echo "FAIL: the smartmca hook is not listed"; exit 1; }
    if grep -i smartmca "$work/hooks.txt" | grep -qi "error"; then
        echo "FAIL: the smartmca hook is listed with an error"
        exit 1
    fi
    for script in smartmca-emulator smartmca-check; do
        "$venv/bin/$script" --help >/dev/null && echo "ok    $script --help"
    done
    cd "$repo"
}

[ "$(wc -l <"$work/cells.tsv")" -eq 2 ] || { cat "$work/cells.tsv"; echo "FAIL: expected 2 cells"; exit 1; }
while IFS=$'\t' read -r -u 3 cell python airflow line; do
    step "$cell: the README's install line with the wheel, in a fresh venv ($("$python" --version))"
    echo "\$ $line"
    "$python" -m venv "$work/$cell"
    export AIRFLOW_HOME="$work/$cell.airflow_home" # a throwaway home, before anything imports Airflow
    # As typed into a shell whose venv is active, from the repository root (the constraints path).
    PATH="$work/$cell/bin:$PATH" bash -c "$line" >"$work/$cell.pip.log" 2>&1 ||
        { grep -v "is ignored" "$work/$cell.pip.log" | tail -40; exit 1; }
    "$work/$cell/bin/python" -m pip show airflow-provider-smartmca apache-airflow | grep -E "^(Name|Version|Location)"
    installed=$("$work/$cell/bin/python" -c 'import airflow; print(airflow.__version__)')
    [ "$installed" = "$airflow" ] || { echo "FAIL: Airflow $installed installed, $airflow pinned"; exit 1; }
    use_as_a_user "$work/$cell"
done 3<"$work/cells.tsv"

step "release check passed in $((SECONDS - started)) s"
