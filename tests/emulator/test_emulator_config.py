"""Configuration loading, validation errors, port-in-use and TLS."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from emu_helpers import Api

from airflow_provider_smartmca.testing import Emulator, EmulatorConfigError, EmulatorError, load_config

CUSTOM = {
    "keys": [{"key": "smca_custom_1", "name": "ci", "scopes": "workflows:read"}],
    "durations": {"pending_seconds": 1.5, "node_seconds": 0.5},
    "workflows": [
        {"id": "wf_deal_onboarding", "name": "Deal Onboarding v4", "version": 4},
        {"id": "wf_new", "name": "New One", "entityType": "merchant", "nodes": ["A", "B"]},
    ],
}


def test_defaults() -> None:
    cfg = load_config(None)
    assert set(cfg.keys) == {"smca_test_full", "smca_test_read", "smca_test_trigger"}
    assert cfg.keys["smca_test_read"].scopes == {"workflows:read"}
    assert cfg.keys["smca_test_full"].scopes == {
        "workflows:read",
        "workflows:trigger",
        "underwriting:trigger",
    }
    assert cfg.workflows["wf_app_underwriting"].nodeCount == 6
    assert cfg.workflows["wf_merchant_kyc"].nodeCount == 5
    assert cfg.pending_seconds <= 0.5 and cfg.node_seconds <= 0.2


def _check_custom(cfg: Any) -> None:
    assert list(cfg.keys) == ["smca_custom_1"]
    assert cfg.keys["smca_custom_1"].name == "ci"
    assert (cfg.pending_seconds, cfg.node_seconds) == (1.5, 0.5)
    wf = cfg.workflows["wf_deal_onboarding"]
    assert (wf.name, wf.version, wf.nodeCount, wf.category) == ("Deal Onboarding v4", 4, 8, "onboarding")
    assert cfg.workflows["wf_new"].nodeCount == 2
    assert "wf_merchant_kyc" in cfg.workflows


def test_json_file(tmp_path: Path) -> None:
    p = tmp_path / "emu.json"
    p.write_text(json.dumps(CUSTOM))
    _check_custom(load_config(p))


def test_yaml_file(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    p = tmp_path / "emu.yaml"
    p.write_text(yaml.safe_dump(CUSTOM))
    _check_custom(load_config(str(p)))


def test_custom_key_used_over_http(make_emulator: Any) -> None:
    api = Api(make_emulator(CUSTOM))
    assert api.get("/workflows", headers={"Authorization": "Bearer smca_custom_1"}).status_code == 200
    assert api.get("/workflows", headers={"Authorization": "Bearer smca_test_full"}).status_code == 401
    names = [
        w["name"]
        for w in api.get("/workflows", headers={"Authorization": "Bearer smca_custom_1"}).json()["data"]
    ]
    assert "Deal Onboarding v4" in names and "New One" in names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workflows:\n  - id: wf_deal_onboarding\n  - id: wf_merchant_kyc\n  - id: wf_x\n    name: X\n"
         "    entityType: deal\n    nodeCount: 0\n", "config.yaml: workflows[2].nodeCount must be a positive integer"),
        ("workflows:\n  - id: wf_new\n", "config.yaml: workflows[0].name must be a non-empty string"),
        ("durations:\n  node_seconds: -1\n", "config.yaml: durations.node_seconds must be a non-negative number"),
        ("keys:\n  - key: k\n    scopes: 5\n", "config.yaml: keys[0].scopes must be a list of strings"),
        ("bogus: 1\n", "config.yaml: bogus is not a known setting"),
        ("workflows:\n  - id: wf_merchant_kyc\n    outcome: {fail_at_node: 9}\n",
         "config.yaml: workflows[0].outcome refers to node 9"),
        ("workflows:\n  - id: wf_merchant_kyc\n    outcome: {fail_probability: 2}\n",
         "config.yaml: workflows[0].outcome.fail_probability must be a number between 0 and 1"),
        ("actions:\n  change-status: wf_nope\n", 'config.yaml: actions.change-status refers to unknown workflow "wf_nope"'),
        ("workflows: [1, 2\n", "config.yaml: invalid YAML"),
    ],
)  # fmt: skip
def test_bad_yaml_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    with pytest.raises(EmulatorConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(message), str(info.value)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "emu.json"
    p.write_text("{not json")
    with pytest.raises(EmulatorConfigError, match=r"emu\.json: invalid JSON"):
        load_config(p)
    with pytest.raises(EmulatorConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.json")
    with pytest.raises(EmulatorConfigError, match=r"config: workflows\[0\]\.isActive must be true or false"):
        load_config({"workflows": [{"id": "wf_merchant_kyc", "isActive": "yes"}]})


def test_port_in_use_raises_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(EmulatorError, match=f"cannot listen on 127.0.0.1:{port}: address already in use"):
            Emulator(port=port).start()


def test_tls(tmp_path: Path, make_emulator: Any) -> None:
    from airflow_provider_smartmca.testing.tls import self_signed_cert

    cert, key = self_signed_cert(tmp_path)
    emu = make_emulator(tls_cert=cert, tls_key=key)
    assert emu.base_url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(cert))  # hostname checked too: the cert names 127.0.0.1
    req = urllib.request.Request(
        emu.api_url + "/workflows", headers={"Authorization": "Bearer smca_test_full"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        assert json.load(resp)["total"] == 9
