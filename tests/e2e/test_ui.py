"""The real UI: headless Debian chromium (driven by Playwright) fills in a new SmartMCA connection.

Chromium comes from Debian's ``chromium`` / ``chromium-driver`` packages, installed here with
apt-get when missing; Playwright never downloads a browser (``executable_path``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, Stack
from tests.e2e.harness import REPO, ensure_apt_packages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "img" / "connection-form.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def test_connection_form_in_the_real_ui(e2e: Stack) -> None:
    ensure_apt_packages(["chromium", "chromium-driver"], CHROMIUM.exists)
    from playwright.sync_api import expect, sync_playwright

    base = e2e.airflow.url
    profile = Path(tempfile.mkdtemp(prefix="smartmca-chromium-"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 1400},
            )
            try:
                page = ctx.new_page()
                page.set_default_timeout(60_000)
                # Simple auth manager with all_admins: this sets the JWT cookie and redirects.
                page.goto(f"{base}/auth/token/login?next={base}/connections", wait_until="networkidle")
                try:
                    page.get_by_role("button", name="Add Connection").click()
                    dialog = page.get_by_role("dialog")
                    expect(dialog).to_be_visible()
                    dialog.get_by_label("Connection ID").first.fill("smartmca_ui_check")
                    combo = dialog.get_by_role("combobox").first
                    combo.click()
                    page.keyboard.type("SmartMCA")
                    page.get_by_role("option", name="SmartMCA").first.click()

                    # Standard fields (open by default): relabeled host/password, masked key.
                    expect(dialog.get_by_text("Base URL", exact=True)).to_be_visible()
                    expect(dialog.get_by_text("API key", exact=True)).to_be_visible()
                    api_key = dialog.locator('input[type="password"]')
                    expect(api_key).to_have_count(1)
                    expect(api_key).to_be_visible()
                    api_key.fill("smca_live_example")
                    dialog.get_by_placeholder("https://api.smartmca.com").fill("https://api.smartmca.com")
                    # Hidden standard fields: neither their labels nor their inputs.
                    for hidden in ("Login", "Schema", "Port"):
                        assert dialog.get_by_text(hidden, exact=True).count() == 0, f"{hidden} is shown"
                    for name in ("login", "schema", "port"):
                        assert dialog.locator(f'input[name="{name}"]:visible').count() == 0, name
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(ARTIFACTS / "connection-form.png"), full_page=True)
                    # The provider's own field, in the (collapsed) extra fields section.
                    dialog.get_by_text("Extra Fields", exact=True).first.click()
                    scopes = dialog.get_by_text("Scopes", exact=True)
                    expect(scopes).to_be_visible()
                    page.wait_for_timeout(1000)  # let the accordion animation finish
                    page.screenshot(path=str(ARTIFACTS / "connection-form-extra.png"), full_page=True)
                except Exception:
                    page.screenshot(path=str(ARTIFACTS / "connection-form-failed.png"), full_page=True)
                    raise
            finally:
                ctx.close()
        # The README's screenshots are refreshed only on request, so a test run never dirties the tree.
        if os.environ.get("E2E_UPDATE_SCREENSHOTS"):
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ARTIFACTS / "connection-form.png", SCREENSHOT)
            shutil.copy(
                ARTIFACTS / "connection-form-extra.png", SCREENSHOT.with_name("connection-form-extra.png")
            )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
