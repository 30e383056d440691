"""Clear failures in the client: a server that breaks the protocol fails the call at once, by name."""
from __future__ import annotations

import sys

import pytest

from quantlab.client import MCPHub, ProtocolError

from .conftest import HERE, child_env


def _config(**extra):
    entry = {"command": sys.executable, "args": [str(HERE / "_bad_server.py")],
             "env": {"PYTHONPATH": child_env()["PYTHONPATH"]}}
    return {"mcpServers": {"bad": {**entry, **extra}, "good": dict(entry)}}


def test_invalid_json_from_a_server_is_a_protocol_error_at_once():
    with MCPHub.from_config(_config()) as hub:
        assert hub.call("bad", "ok") == "ok"
        # before: a TimeoutError after the whole timeout (here it would take 120 s)
        with pytest.raises(ProtocolError, match=r"server 'bad' .*broke the MCP protocol during 'garbage'") as info:
            hub.call("bad", "garbage", timeout=120)
        assert info.value.server == "bad" and info.value.tool == "garbage"
        assert not isinstance(info.value, TimeoutError)
        # the session stays usable, and other servers never noticed
        assert hub.call("bad", "ok") == "ok"
        assert hub.call("good", "ok") == "ok"
