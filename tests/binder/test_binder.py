"""Binder from binder/ alone: a fresh venv with binder/requirements.txt, binder/postBuild,
then the quickstart executed there (papermill with that venv's kernel, through binder/start).

This is what repo2docker does, minus Docker: if a dependency is missing from
binder/requirements.txt, or postBuild breaks, this test fails. pip installs from the
registry (its cache makes repeat runs fast). About 2 minutes on 2 busy cores.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from quantlab.hub import AssetsHub

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"


def _run(cmd, env, timeout, cwd=None):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.mark.timeout(900)   # pip may download on a cold cache; warm, the whole test takes about a minute
def test_binder_recipe_builds_a_fresh_env_and_runs_the_quickstart(tmp_path):
    timings = {}
    venv = tmp_path / "venv"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bindir = venv / "bin"
    python = bindir / "python"
    # a clean environment: the venv first on PATH, nothing from this interpreter, state in tmp
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore",
               QUANTLAB_DEMO_HUB=str(tmp_path / "demo-hub"), GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    _run([python, "-m", "pip", "install", "-q", "-r", BINDER / "requirements.txt"], env, timeout=900)
    timings["requirements"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    built = _run(["bash", BINDER / "postBuild"], env, timeout=300)
    timings["postBuild"] = time.perf_counter() - t1
    assert "demo assets hub ready" in built.stdout
    # JupyterLab there saves widget state with the notebook (reopened: widgets, not "model not found")
    import json

    overrides = json.loads((venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json").read_text())
    assert overrides["@jupyter-widgets/jupyterlab-manager:plugin"]["saveState"] is True
    where = _run([python, "-c", "import quantlab, sys; print(quantlab.__file__); print(sys.prefix)"], env, timeout=60)
    assert where.stdout.splitlines() == [str(REPO / "quantlab" / "__init__.py"), str(venv)]

    # the quickstart, as Binder's JupyterLab would run it: through binder/start, on the venv's kernel
    t2 = time.perf_counter()
    out = tmp_path / "quickstart.ipynb"
    _run([BINDER / "start", python, "-m", "papermill", REPO / "notebooks" / "01_quickstart.ipynb", out,
          "--cwd", REPO / "notebooks", "--no-progress-bar",
          "-p", "teardown", "True"], env, timeout=300)   # headless, as `quantlab demo`: stop and close at the end
    timings["quickstart"] = time.perf_counter() - t2
    nb = nbformat.read(out, as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    from quantlab.reports.notebooks import widget_views

    assert widget_views(nb) and all(v["saved"] and "text/html" in v["fallback"] for v in widget_views(nb))

    # the notebook used the hub postBuild prepared (binder/start exports it): example + new strategy
    hub = AssetsHub(tmp_path / "demo-hub", create=False)
    try:
        assert set(hub.strategies()["name"]) == {"momentum", "sma_cross"}
        assert hub.deployment_status().iloc[-1]["status"] == "stopped"
    finally:
        hub.close()
    print("binder timings:", {k: f"{v:.0f}s" for k, v in timings.items()})
