"""A person's path through the quickstart, in a real browser.

JupyterLab runs on 127.0.0.1 (free port, token, no browser) over a temporary copy of
notebooks/; Chromium from the Debian package, driven by Playwright, opens
01_quickstart with ``auto_deploy = False``, runs all cells from the Run menu, waits for
the "Store & Deploy" button, clicks it, and the test checks the hub (new commit), the
ledger (running deployment) and the monitor widget (the broker's live status); it runs
the "Watch it trade" cell again, as the notebook says, and checks the monitor's chart
(candles, the fills marked, the market clock), then presses the panel's Stop button
(ledger: stopped).

A screenshot of the review widget goes to ``docs/review.png`` when that file is missing
or ``QUANTLAB_UPDATE_SCREENSHOT=1`` (the README shows it); always to the test's tmp dir.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from quantlab.hub import AssetsHub
from quantlab.reports import notebooks_dir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "review.png"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium missing: apt-get install -y chromium (.ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def jupyterlab(tmp_path):
    """(base url, token, root dir, hub path) of a JupyterLab serving a copy of notebooks/."""
    root = tmp_path / "root"
    shutil.copytree(notebooks_dir(), root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "assets-hub"))
    hub = tmp_path / "hub"
    nb = nbformat.read(root / "01_quickstart.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace("hub = None", f"hub = {str(hub)!r}").replace("auto_deploy = True", "auto_deploy = False")
    assert f"hub = {str(hub)!r}" in params.source and "auto_deploy = False" in params.source
    nbformat.write(nb, root / "01_quickstart_browser.ipynb")

    # JupyterLab's own state in the temp dir; no news / update checks (no network)
    settings = tmp_path / "lab-settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"autoStartDefaultKernel": True}))      # no "Select Kernel" dialog
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "MPLBACKEND": "Agg"}
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield base, token, root, hub
    finally:
        proc.send_signal(signal.SIGINT)   # Jupyter's clean shutdown: kernels (and their MCP servers) stop
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _accept_kernel_dialog(page, wait_ms: int = 5_000) -> None:
    """JupyterLab may ask which kernel to use (the notebook names python3): take the proposed one."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=wait_ms)
    except Exception:  # noqa: BLE001 - no dialog: the kernel started by itself
        return
    dialog.locator("button", has_text="Select").last.click()
    dialog.wait_for(state="detached", timeout=10_000)


def test_quickstart_in_jupyterlab_store_and_deploy_click(jupyterlab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, token, root, hub = jupyterlab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1500})
        try:
            page.goto(f"{base}/lab/tree/01_quickstart_browser.ipynb?token={token}", wait_until="domcontentloaded")
            # the notebook is open and its kernel is up
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="File Browser (Ctrl+Shift+F)").click()   # more room: collapse the file browser

            _accept_kernel_dialog(page, wait_ms=1_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            _accept_kernel_dialog(page)

            button = page.locator("button.jupyter-button", has_text="Store & Deploy")
            expect(button).to_be_visible(timeout=120_000)
            expect(button).to_be_enabled(timeout=30_000)

            # Run All reaches its last cell, which keeps the lab open (teardown runs only headless)
            expect(page.get_by_text("The lab stays open and the strategy keeps trading").first).to_be_visible(timeout=120_000)
            before = AssetsHub(hub, create=False)
            try:
                assert before.strategies().empty                     # nothing stored before the click
            finally:
                before.close()

            # the review widget: live ipywidgets view with its PNG charts
            review = page.locator(".jp-OutputArea-output", has=page.locator(".widget-tab")).first
            review.scroll_into_view_if_needed()
            charts = review.locator("img")
            expect(charts.first).to_be_visible(timeout=30_000)
            page.wait_for_function(
                "els => els.length > 0 && els.every(i => i.complete && i.naturalWidth > 200)",
                arg=charts.element_handles(), timeout=30_000,
            )
            review.screenshot(path=str(tmp_path / "review.png"))
            if not DOCS_SCREENSHOT.exists() or os.environ.get("QUANTLAB_UPDATE_SCREENSHOT") == "1":
                DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(tmp_path / "review.png", DOCS_SCREENSHOT)

            button.scroll_into_view_if_needed()
            button.click()
            expect(page.get_by_text("Stored and deployed.").first).to_be_visible(timeout=120_000)
            deployed = page.locator("button.jupyter-button", has_text="Deployed ✓")
            expect(deployed).to_be_visible()
            expect(deployed).to_be_disabled()               # no double submit
            expect(page.locator("button.jupyter-button", has_text="Stop").first).to_be_visible()

            # the hub has the new commit, the ledger a running deployment
            store = AssetsHub(hub, create=False)
            try:
                strategies = store.strategies()
                assert list(strategies["name"]) == ["sma_cross"]
                commit = strategies.iloc[0]["commit"]
                assert "sharpe" in store.repo.commit(commit).message.lower()
                status = store.deployment_status()
                assert len(status) == 1 and status.iloc[0]["status"] == "running" and status.iloc[0]["commit"] == commit
                dep_id = str(status.iloc[0]["broker_deployment_id"])
            finally:
                store.close()
            panel_text = page.locator(".jp-OutputArea-output", has=deployed).first.inner_text()
            assert commit[:12] in panel_text and f"deployment {dep_id}" in panel_text.replace("\n", " ")

            # the monitor (refreshing from the broker on its own) shows the deployment running
            monitor = page.locator(".quantlab-deployments").first
            expect(monitor).to_contain_text("running", timeout=30_000)
            expect(monitor).to_contain_text("sma_cross")

            # re-running "Watch it trade" steps the market: the chart shows the candles with the fills marked
            watch = page.locator(".jp-CodeCell", has_text="monitor = quantlab.monitor(lab)").first
            watch.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            chart = watch.locator("svg.quantlab-live-chart")
            expect(chart).to_be_visible(timeout=90_000)
            expect(chart.locator("path.fill-buy")).to_have_count(1, timeout=30_000)
            assert int(chart.get_attribute("data-fills")) > 0
            assert chart.get_attribute("data-deployment") == dep_id
            expect(chart.locator("text.market-clock")).to_contain_text("market time 20")
            assert chart.locator("path.candle-up").count() == 1 and chart.locator("path.paper-position").count() == 1
            chart.scroll_into_view_if_needed()
            chart.screenshot(path=str(tmp_path / "monitor.png"))

            # the panel's Stop button stops it on the broker and in the ledger
            page.locator("button.jupyter-button", has_text="Stop").first.click()
            expect(page.locator(".jp-OutputArea-output", has=deployed).first).to_contain_text("status stopped", timeout=60_000)
            store = AssetsHub(hub, create=False)
            try:
                assert store.deployment_status().iloc[-1]["status"] == "stopped"
            finally:
                store.close()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
