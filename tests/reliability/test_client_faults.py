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


def test_a_reply_over_the_size_limit_is_refused_with_a_clear_error_and_others_keep_their_latency():
    import threading
    import time

    with MCPHub.from_config(_config(max_message_bytes="4MB")) as hub:
        hub.connect_all()
        assert hub.call("bad", "big", {"mb": 1}) == "x" * (1024 * 1024)  # under the limit: fine
        # the other server answers while a 60 MB reply streams in (before: the client parsed it all on the
        # event loop every server shares, seconds per call for everyone)
        good: list[float] = []
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                t0 = time.perf_counter()
                assert hub.call("good", "ok") == "ok"
                good.append(time.perf_counter() - t0)

        t = threading.Thread(target=poll)
        t.start()
        try:
            with pytest.raises(ProtocolError, match=r"'big'.*larger than its max_message_bytes .* 4,194,304 bytes"):
                hub.call("bad", "big", {"mb": 60}, timeout=300)
        finally:
            stop.set()
            t.join()
        assert good  # the other server kept answering meanwhile
        assert hub.call("bad", "ok") == "ok"  # and this session is still usable


def test_max_message_bytes_is_checked_in_the_config():
    with pytest.raises(ValueError, match="max_message_bytes must be a size"):
        MCPHub.from_config(_config(max_message_bytes="lots"))
