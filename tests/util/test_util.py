"""quantlab._util: the stdlib-only helpers every layer uses (real files, real processes)."""
from __future__ import annotations

import doctest
import importlib
import json
import math
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from quantlab._util import (
    atomic_path, atomic_write_text, dask_address, decode_number, encode_float, is_dask_address, json_default,
    kill_process, pid_alive, quantlab_home, to_jsonable,
)


@pytest.mark.parametrize("name", ["quantlab._util", "quantlab._util.files", "quantlab._util.jsonsafe",
                                  "quantlab._util.procs", "quantlab._util.home", "quantlab._util.dask"])
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_util_imports_only_the_standard_library():
    code = ("import sys, quantlab._util; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'numpy', 'pandas', 'mcp', 'pydantic'} "
            "or (m.startswith('quantlab.') and not m.startswith('quantlab._util'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind


def test_nonfinite_numbers_round_trip_through_json():
    value = {"pf": float("inf"), "dd": -math.inf, "s": np.float64("nan"), "n": np.int64(3), "ok": np.bool_(True),
             "xs": np.array([1.0, np.inf]), "when": pd.Timestamp("2024-01-02"), "t": (1, 2)}
    text = json.dumps(to_jsonable(value), allow_nan=False)
    back = {k: decode_number(v) for k, v in json.loads(text).items()}
    assert back["pf"] == math.inf and back["dd"] == -math.inf and math.isnan(back["s"])
    assert back["n"] == 3 and type(back["n"]) is int and back["ok"] is True
    assert back["xs"] == [1.0, "inf"] and back["when"] == "2024-01-02T00:00:00" and back["t"] == [1, 2]
    assert encode_float(1.5) == 1.5 and decode_number("two") == "two"
    assert json.loads(json.dumps({"x": np.float32(0.5)}, default=json_default)) == {"x": 0.5}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        json.dumps(object(), default=json_default)


def test_kill_process_stops_a_whole_process_group():
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(leader.stdout.readline())
    try:
        assert pid_alive(leader.pid) and pid_alive(child)
        assert kill_process(leader.pid, grace=2, group=True) is True
        leader.wait(timeout=5)
        for _ in range(100):  # the grandchild is reaped by init; wait until it is gone
            if not pid_alive(child):
                break
            time.sleep(0.05)
        assert not pid_alive(child)
        assert kill_process(leader.pid) is False  # nothing left to stop
    finally:
        for pid in (leader.pid, child):
            if pid_alive(pid):
                kill_process(pid, grace=0)
        leader.stdout.close()


@pytest.mark.parametrize("spec, address", [("dask://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
                                           ("tcp://host:1", "tcp://host:1"), ("tls://h.example:8786/", "tls://h.example:8786"),
                                           (" DASK://h:2 ", "tcp://h:2")])
def test_dask_addresses_accept_every_scheme_any_caller_accepted(spec, address):
    assert is_dask_address(spec) and dask_address(spec) == address


@pytest.mark.parametrize("spec", ["processes", "http://h:1", "dask://h", "tcp://:8786", "dask://h:port"])
def test_a_bad_dask_address_says_what_to_write(spec):
    with pytest.raises(ValueError, match="dask://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT"):
        dask_address(spec)


def test_quantlab_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QUANTLAB_HOME", str(tmp_path))
    assert quantlab_home() == tmp_path
    monkeypatch.setenv("QUANTLAB_HOME", "")
    assert quantlab_home().name == ".quantlab"


def test_kill_process_cleans_up_the_group_of_a_leader_that_already_exited():
    code = ("import subprocess, sys; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print(c.pid, flush=True)")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(leader.stdout.readline())
    leader.wait(timeout=10)
    leader.stdout.close()
    try:
        assert pid_alive(child)                               # a leftover worker of a finished leader
        assert kill_process(leader.pid, group=True) is False  # the leader was not running...
        for _ in range(100):
            if not pid_alive(child):
                break
            time.sleep(0.05)
        assert not pid_alive(child)                           # ...but its group is gone
    finally:
        if pid_alive(child):
            kill_process(child, grace=0)
