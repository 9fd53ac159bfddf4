"""``smartmca-check`` against the emulator: passes as it is, fails against each drift naming the
field, sends GETs only, and never prints the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smartmca.check import DIFFERS, HOLDS, UNCHECKED, main
from airflow_provider_smartmca.client.contract import SHAPES
from airflow_provider_smartmca.testing import DRIFTS, FULL_KEY, READ_KEY
from airflow_provider_smartmca.testing.server import Emulator

SCRIPT = Path(sys.executable).with_name("smartmca-check")

# drift -> what the differing rows must name (exit 1); None: a read-only probe cannot see it (exit 0).
DRIFT_NAMES: dict[str, tuple[str, ...] | None] = {
    "rename_fields": ("'data[0].executionId' is missing", "'data[0].status' is missing"),
    "list_envelope": ("'data' is missing",),
    "list_items_without_id": ("'data[0].executionId' is missing",),
    "list_items_not_objects": ("data[0] (workflow), got a string", "data[0] (execution), got a string"),
    "action_204": None,
    "action_no_execution": None,
    "unknown_status": ("'paused'",),
    "unsorted_list": ("sort_order",),
    "bad_timestamps": ("'data[0].startedAt' must be an ISO 8601", "'startedAt' must be an ISO 8601"),
    "status_as_list": ("'status' must be a non-empty string",),
    "nodes_as_number": ("'nodes' must be a list",),
    "no_timestamps": ("without a readable completedAt",),
    "no_completed_at": ("without a readable completedAt",),
    "total_counts_page": ("total=5 counts only page 1",),
    "huge_total": ("'total' must be an integer from 0 to 2**53",),
}


def assert_no_key(text: str, key: str) -> None:
    """Not the key, nor any 8 characters of it in a row."""
    assert not any(key[i : i + 8] in text for i in range(len(key) - 7)), "the key was printed"


def populate(hook: Any, emu: Emulator, n: int = 7) -> None:
    """``n`` ended executions (completed and failed), more than one page of the probe's limit."""
    for i in range(n):
        workflow = ("wf_deal_onboarding", "wf_deal_compliance_fail")[i % 2]
        hook.trigger_workflow(workflow, "deal", f"deal_{i}")
    deadline = time.monotonic() + 10
    while any(e["status"] in ("pending", "running") for e in emu.executions()):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()  # what the test printed before (Airflow 3.0 logs a hook's lookup to stdout)
    code = main(["--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), out + err


def rows(report: dict[str, Any], verdict: str) -> list[str]:
    return [f"{r['assumption']} | {r['seen']}" for r in report["rows"] if r["verdict"] == verdict]


@pytest.fixture
def populated(hook, smartmca_emulator: Emulator) -> Emulator:
    populate(hook, smartmca_emulator)
    return smartmca_emulator


# --- the real console script ------------------------------------------------------------------


@pytest.mark.slow
def test_console_script_passes_against_the_emulator_and_never_prints_the_key(populated: Emulator):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["SMARTMCA_API_KEY"] = FULL_KEY
    before = len(populated.requests)
    start = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), "--base-url", populated.base_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith(f"smartmca-check: {populated.base_url}")
    assert f"\n{DIFFERS} " not in out
    assert "every assumption a read-only probe can check holds" in out
    for line in ("list_executions data[].executionId: string, required (assumed)", "other keys are ignored"):
        assert any(row.startswith(HOLDS) and line in row for row in out.splitlines()), line
    assert_no_key(proc.stdout + proc.stderr, FULL_KEY)
    assert elapsed < 60
    probes = populated.requests[before:]
    assert {r.method for r in probes} == {"GET"}  # read-only
    assert {r.route for r in probes} == {"list_workflows", "get_workflow", "list_executions", "get_execution"}


@pytest.mark.slow
def test_console_script_reads_an_airflow_connection_from_the_environment(populated: Emulator):
    env = dict(os.environ)
    env["AIRFLOW_CONN_SMARTMCA_PROD"] = json.dumps(
        {
            "conn_type": "smartmca",
            "host": populated.base_url,
            "password": FULL_KEY,
            "extra": {"clock_skew": 45},
        }
    )
    proc = subprocess.run(
        [str(SCRIPT), "--conn-id", "smartmca_prod", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["target"] == f"{populated.base_url} (connection smartmca_prod)"
    assert any("clock_skew=45 s" in r["assumption"] and r["verdict"] == HOLDS for r in report["rows"])
    assert_no_key(proc.stdout + proc.stderr, FULL_KEY)


# --- in process: every drift --------------------------------------------------------------------


def test_every_drift_is_covered():
    assert set(DRIFT_NAMES) == set(DRIFTS)


@pytest.mark.parametrize("drift", sorted(DRIFT_NAMES))
def test_fails_against_each_drift_naming_the_field(hook, populated: Emulator, capsys, drift):
    populated.configure(drift=[drift])
    posts = populated.count(method="POST")
    code, report, text = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    differs = rows(report, DIFFERS)
    names = DRIFT_NAMES[drift]
    if names is None:  # only the POSTs drift: a read-only probe must not claim they hold
        assert code == 0 and not differs, differs
        action_rows = [r for r in report["rows"] if r["assumption"].startswith("application action")]
        assert action_rows and {r["verdict"] for r in action_rows} == {UNCHECKED}
    else:
        assert code == 1 and report["ok"] is False
        for name in names:
            assert any(name in row for row in differs), (name, differs)
    assert populated.count(method="POST") == posts  # read-only
    assert_no_key(text, FULL_KEY)


@pytest.fixture(autouse=True)
def _check_key(monkeypatch):
    monkeypatch.setenv("CHECK_KEY", FULL_KEY)


def test_every_field_of_the_contract_has_a_row(hook, populated: Emulator, capsys):
    code, report, _ = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    assert code == 0
    assumptions = [r["assumption"] for r in report["rows"]]
    for shape, fields in SHAPES.items():
        for spec in fields:
            marker = (
                f"{spec.name}: {spec.kind}, {'required' if spec.required else 'optional'} ({spec.source})"
            )
            assert any(marker in a for a in assumptions), (shape, marker)


def test_no_executions_yet_is_reported_as_cannot_be_checked(smartmca_emulator: Emulator, capsys):
    code, report, _ = run_json(capsys, "--base-url", smartmca_emulator.base_url, "--key-env", "CHECK_KEY")
    assert code == 0, rows(report, DIFFERS)
    unchecked = rows(report, UNCHECKED)
    for expected in ("get_execution executionId", "sort_order", "execution status is one of", "timestamps"):
        assert any(expected in row for row in unchecked), expected


def test_the_write_scopes_are_never_claimed(hook, populated: Emulator, capsys, monkeypatch):
    monkeypatch.setenv("CHECK_KEY", READ_KEY)  # workflows:read only
    code, report, text = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    assert code == 0
    scopes = {
        r["assumption"].split(" (")[0]: r
        for r in report["rows"]
        if r["assumption"].startswith("the key holds")
    }
    assert scopes["the key holds workflows:read"]["verdict"] == HOLDS
    assert scopes["the key holds workflows:trigger"]["verdict"] == UNCHECKED
    assert scopes["the key holds underwriting:trigger"]["verdict"] == UNCHECKED
    assert_no_key(text, READ_KEY)


def test_a_refused_key_differs_and_is_never_printed(smartmca_emulator: Emulator, capsys, monkeypatch):
    key = "smca_wrong_key_7e21abcd"
    monkeypatch.setenv("CHECK_KEY", key)
    code, report, text = run_json(capsys, "--base-url", smartmca_emulator.base_url, "--key-env", "CHECK_KEY")
    assert code == 1
    assert any("HTTP 401" in row for row in rows(report, DIFFERS))
    assert_no_key(text, key)


@pytest.mark.parametrize(
    ("fault", "shown"),
    [
        (
            {"kind": "echo", "echo_in": "body", "status": 200, "offset": 60, "count": 20},
            "cannot read as JSON",
        ),
        ({"kind": "echo", "echo_in": "required_scope", "count": 20}, "HTTP 403"),
    ],
)
@pytest.mark.slow
def test_a_server_echoing_the_key_does_not_make_the_check_print_it(
    smartmca_emulator: Emulator, capsys, fault, shown
):
    smartmca_emulator.add_fault(fault.pop("kind"), route="list_workflows", **fault)
    code, report, text = run_json(capsys, "--base-url", smartmca_emulator.base_url, "--key-env", "CHECK_KEY")
    assert code == 1
    assert any(shown in row for row in rows(report, DIFFERS))
    assert_no_key(text, FULL_KEY)


def test_a_server_clock_beyond_clock_skew_differs(hook, populated: Emulator, capsys):
    populated.configure(clock_offset_seconds=-120)
    code, report, _ = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    assert code == 1
    (clock,) = [row for row in rows(report, DIFFERS) if "clock_skew" in row]
    assert "-1" in clock.split("|")[1]  # about -120 s, never a timestamp


def test_the_table_has_one_row_per_assumption_and_a_summary(hook, populated: Emulator, capsys):
    assert main(["--base-url", populated.base_url, "--key-env", "CHECK_KEY"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[2].split() == ["VERDICT", "ASSUMPTION", "SEEN"]
    body = lines[3 : lines.index("", 3)]
    assert all(line.startswith((HOLDS, DIFFERS, UNCHECKED)) for line in body)
    assert lines[-1].endswith("every assumption a read-only probe can check holds.")


# --- refusing to start --------------------------------------------------------------------------


def test_a_missing_key_variable_exits_2_naming_it(smartmca_emulator: Emulator, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    assert main(["--base-url", smartmca_emulator.base_url, "--key-env", "NO_SUCH_KEY_VAR"]) == 2
    assert "NO_SUCH_KEY_VAR" in capsys.readouterr().err
    assert not smartmca_emulator.requests


def test_a_missing_connection_exits_2(capsys):
    assert main(["--conn-id", "smartmca_no_such_conn"]) == 2
    assert "smartmca_no_such_conn" in capsys.readouterr().err


def test_an_insecure_base_url_exits_2(capsys):
    assert main(["--base-url", "http://api.example.com", "--key-env", "CHECK_KEY"]) == 2
    err = capsys.readouterr().err
    assert "http://" in err
    assert_no_key(err, FULL_KEY)


def test_a_bad_limit_exits_2(capsys):
    assert main(["--limit", "1"]) == 2


def test_the_event_watchers_assumptions_are_checked(
    populated: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CHECK_KEY", FULL_KEY)
    # ExecutionEventTrigger reads final executions by status and compares completedAt with Date.
    populated.configure(clock_offset_seconds=-600)  # both on the server's clock: still holds
    code, report, _ = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    held = rows(report, HOLDS)
    assert any("honours status=completed" in r and "all completed" in r for r in held), held
    assert any("completedAt, not after the server's Date" in r for r in held), held
    populated.configure(clock_offset_seconds=0, drift=["bad_timestamps"])
    code, report, _ = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    assert code == 1
    assert any("completedAt, not after the server's Date" in r for r in rows(report, DIFFERS))


def test_a_date_header_ahead_of_the_timestamps_differs(
    populated: Emulator, capsys: pytest.CaptureFixture[str]
):
    # The harmless direction (completedAt after Date) is another row; this is the one that loses events.
    populated.configure(date_offset_seconds=300)
    code, report, _ = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    assert code == 1
    (row,) = [r for r in rows(report, DIFFERS) if "Date header runs ahead" in r]
    assert "+30" in row.split("|")[1]  # about 300 s, never a timestamp
    populated.configure(date_offset_seconds=0)
    code, report, _ = run_json(capsys, "--base-url", populated.base_url, "--key-env", "CHECK_KEY")
    assert code == 0
    assert any("Date header runs ahead" in r for r in rows(report, HOLDS))


# --- the summary names the cause, without pointing at files a pip user does not have -------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CAUSES = {
    "key refused": "the API key is refused (HTTP 401)",
    "host unreachable": "cannot be reached",
    "scope missing": "lacks a scope (HTTP 403)",
    "scope undeclared": "does not declare",
    "api differs": "the API answers differently from what the provider assumes",
}


@pytest.mark.parametrize("cause", list(CAUSES))
def test_the_summary_names_the_cause_and_stands_alone(
    cause: str, smartmca_emulator: Emulator, make_hook, capsys, monkeypatch
) -> None:
    args = ["--base-url", smartmca_emulator.base_url, "--key-env", "CHECK_KEY"]
    if cause == "key refused":
        monkeypatch.setenv("CHECK_KEY", "smca_wrong_key_7e21abcd")
    elif cause == "host unreachable":
        args[1] = f"http://127.0.0.1:{_free_port()}"
    elif cause == "scope missing":
        for route in ("list_workflows", "get_workflow", "list_executions", "get_execution"):
            smartmca_emulator.add_fault("status", route=route, status=403, count=20)
    elif cause == "scope undeclared":
        make_hook(extra={"scopes": "workflows:trigger"})  # the connection smartmca_default
        args = ["--conn-id", "smartmca_default"]
    else:
        populate(make_hook(), smartmca_emulator, n=2)
        smartmca_emulator.configure(drift=["rename_fields"])
    code, report, _ = run_json(capsys, *args)
    assert code == 1
    assert "docs/" not in report["summary"]
    assert CAUSES[cause] in report["summary"], report["summary"]
