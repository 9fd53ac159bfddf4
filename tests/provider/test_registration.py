"""Airflow discovers the provider: entry point, schema, CLI listing, connection type and form."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import distribution
from pathlib import Path

import pytest

from airflow_provider_smartmca import __version__
from airflow_provider_smartmca.get_provider_info import get_provider_info
from airflow_provider_smartmca.testing import TRIGGER_KEY
from tests.provider.airflow_cli import AIRFLOW, json_out


def _airflow(*args: str, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(env or {})}
    env.pop("AIRFLOW_CONN_SMARTMCA_DEFAULT", None)
    proc = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_entry_point_and_package_name():
    dist = distribution("airflow-provider-smartmca")
    [ep] = [e for e in dist.entry_points if e.group == "apache_airflow_provider"]
    info = ep.load()()
    assert (
        info["package-name"] == dist.metadata["Name"].lower().replace("_", "-") == "airflow-provider-smartmca"
    )


def test_provider_info_matches_airflow_schema():
    import jsonschema
    from airflow import providers_manager

    schema_path = Path(providers_manager.__file__).with_name("provider_info.schema.json")
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_connection_form_metadata():
    [conn] = get_provider_info()["connection-types"]
    behaviour = conn["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "https://api.smartmca.com"
    assert set(conn["conn-fields"]) == {"scopes", "timeout", "max_retries", "verify_ssl"}


def test_providers_manager_builds_the_form():
    from airflow import __version__
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-smartmca" in pm.providers
    try:  # Airflow >= 3.2: workers resolve hooks through the task SDK's own manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:  # Airflow 3.0, 3.1
        hooks = pm.hooks
    hook_info = hooks["smartmca"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_smartmca.hooks.smartmca.SmartMCAHook"
    if tuple(int(p) for p in __version__.split(".")[:2]) < (3, 2):
        # Before 3.2 Airflow reads no conn-fields/ui-field-behaviour from provider metadata: the
        # form comes from hook methods that need flask-appbuilder. The UI shows the standard
        # fields; the extras go in the Extra JSON (documented in the connection docs).
        assert not any(k.startswith("extra__smartmca__") for k in pm.connection_form_widgets)
        return
    widgets = {k for k in pm.connection_form_widgets if k.startswith("extra__smartmca__")}
    assert {"extra__smartmca__scopes", "extra__smartmca__timeout"} <= widgets
    assert pm.field_behaviours["smartmca"]["relabeling"]["host"] == "Base URL"


def test_the_ui_form_metadata_has_every_extra_field():
    """The UI's Add and Edit forms both build on ``GET /ui/connections/hook_meta``: for SmartMCA it
    lists the four extras. (Edit then shows only the extras the stored connection has: Airflow's
    UI, see docs/guide/troubleshooting.md.)"""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    [meta] = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "smartmca"]
    assert set(meta.extra_fields or {}) == {"scopes", "timeout", "max_retries", "verify_ssl"}
    assert meta.standard_fields is not None and meta.standard_fields.host is not None
    assert meta.standard_fields.host.title == "Base URL"


@pytest.mark.slow
def test_airflow_providers_list_and_get():
    listing = _airflow("providers", "list", "--output", "json")
    names = [p["package_name"] for p in json_out(listing)]
    assert "airflow-provider-smartmca" in names
    got = json_out(_airflow("providers", "get", "airflow-provider-smartmca", "--output", "json"))
    assert got == [{"Provider": "airflow-provider-smartmca", "Version": __version__}]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_airflow_connections_add_then_hook_uses_it(smartmca_emulator):
    conn_id = "smartmca_cli_test"
    extra = json.dumps({"scopes": "workflows:read workflows:trigger"})
    _airflow(
        "connections", "add", conn_id, "--conn-type", "smartmca", "--conn-host", smartmca_emulator.base_url,
        "--conn-password", TRIGGER_KEY, "--conn-extra", extra,
    )  # fmt: skip
    try:
        shown = json_out(_airflow("connections", "get", conn_id, "--output", "json"))
        assert shown[0]["conn_type"] == "smartmca"
        # The CLI resolves the stored connection and runs SmartMCAHook.test_connection() against the emulator.
        tested = _airflow("connections", "test", conn_id, env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"})
        assert "Connection success!" in tested
        assert smartmca_emulator.count(route="list_workflows") == 1
    finally:
        _airflow("connections", "delete", conn_id)


def test_the_form_shows_the_clients_defaults_and_bounds():
    """The form's defaults and limits are the ones the client applies (settings.py holds the rule)."""
    from dataclasses import fields

    from airflow_provider_smartmca.client.settings import BOUNDS, ClientSettings

    defaults = {f.name: f.default for f in fields(ClientSettings)}
    [conn] = get_provider_info()["connection-types"]
    for name, spec in conn["conn-fields"].items():
        schema = spec["schema"]
        if name in BOUNDS:
            assert (schema["minimum"], schema["maximum"]) == (BOUNDS[name].minimum, BOUNDS[name].maximum), (
                name
            )
        if "default" in schema:
            assert schema["default"] == defaults[name], name
