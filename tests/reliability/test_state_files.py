"""A bad ``state.json`` is kept aside with a warning saying where, rebuilt from the ledger, never a raw error."""
from __future__ import annotations

import json
import warnings

import pytest

from quantlab import Lab
from quantlab.client import MCPHub
from quantlab.hub import AssetsHub
from quantlab.lab.state import StateWarning

GOOD = {"created_at": "2026-01-01T00:00:00+00:00", "last_activity": "2026-01-02T00:00:00+00:00",
        "invocation_count": 7, "mcp_connections": {}, "deployments_triggered": []}


def _lab(hub_path) -> Lab:
    return Lab(MCPHub.from_config({"mcpServers": {}}), AssetsHub(hub_path), progress=False)


def _hub_with_a_deployment(tmp_path):
    path = tmp_path / "hub"
    with AssetsHub(path) as hub:
        hub.record_deployment({"strategy_name": "SMA", "status": "pending", "commit": "c0ffee", "broker": "broker",
                               "triggered_at": "2025-12-31T10:00:00+00:00"})
        hub.record_deployment({"strategy_name": "SMA", "status": "running", "commit": "c0ffee", "broker": "broker",
                               "broker_deployment_id": "42", "symbol": "EURUSD", "triggered_at": "2025-12-31T10:00:00+00:00"})
    return path


BAD = {
    "truncated": lambda p: p.write_text(json.dumps(GOOD)[:40]),
    "garbage": lambda p: p.write_bytes(b"\x00\xffnot json at all"),
    "empty": lambda p: p.write_text(""),
    "list": lambda p: p.write_text(json.dumps([GOOD])),
    "string count": lambda p: p.write_text(json.dumps({**GOOD, "invocation_count": "7"})),
    "deployments not a list": lambda p: p.write_text(json.dumps({**GOOD, "deployments_triggered": {"a": 1}})),
    "directory": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_state_file_is_kept_aside_and_rebuilt(tmp_path, kind):
    hub = _hub_with_a_deployment(tmp_path)
    state_path = AssetsHub(hub).quantlab_dir / "state.json"
    BAD[kind](state_path)
    before = state_path.read_bytes() if state_path.is_file() else None
    with pytest.warns(StateWarning) as caught:
        lab = _lab(hub)
    try:
        message = next(str(w.message) for w in caught if issubclass(w.category, StateWarning))  # other warnings may come first
        aside = [p for p in state_path.parent.iterdir() if p.name.startswith("state.json.corrupt-")]
        assert len(aside) == 1 and str(aside[0]) in message  # the warning says where the bad file went
        if before is not None:
            assert aside[0].read_bytes() == before  # kept as it was, for the user to look at
        else:
            assert aside[0].is_dir()
        # every call works: no raw AttributeError / TypeError / IsADirectoryError
        state = lab.state()
        assert [d["deployment_id"] for d in state["deployments_triggered"]] == ["42"]  # rebuilt from the ledger
        assert state["created_at"] <= "2025-12-31T10:00:00+00:00"
        if kind == "string count":
            assert state["invocation_count"] == 7  # what was still readable is kept
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # repaired once: no second warning
            lab._touch()
            assert lab.state()["invocation_count"] == state["invocation_count"] + 1
        assert json.loads(state_path.read_text())["invocation_count"] == state["invocation_count"] + 1
    finally:
        lab.close()


def test_a_good_state_file_is_read_as_is(tmp_path):
    hub = tmp_path / "hub"
    state_path = AssetsHub(hub).quantlab_dir / "state.json"
    state_path.write_text(json.dumps(GOOD))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lab = _lab(hub)
    try:
        st = lab.state()
        assert st["created_at"] == GOOD["created_at"] and st["invocation_count"] == 7
    finally:
        lab.close()
