"""``SignalSession``: one long-lived sandboxed child evaluating successive frames (a deployment's bars).

Real children (zygote fork, seccomp, Landlock, audit hook); the hostile corpus is replayed on the
*second* bar of a session, so the layers are shown to hold after the child has served a bar.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from quantlab.engine import data as qdata
from quantlab.engine.backtest import SignalError
from quantlab.engine.sandbox import SandboxError, SandboxLimits, SignalSession, run_signals


def _corpus():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sandbox_corpus_s", Path(__file__).with_name("corpus.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


corpus = _corpus()
pytestmark = pytest.mark.timeout(120)

DATA = qdata.synthetic(600, seed=4)
LIMITS = SandboxLimits(cpu_seconds=3, wall_seconds=8, memory_mb=1536, output_bytes=50_000)
SMA = "def signals(data, n=5):\n    return (data.close > data.close.rolling(n).mean()) * 1.0\n"
COUNTER = ("SEEN = []\n"
           "def signals(data):\n"
           "    SEEN.append(len(data))\n"
           "    return data.close * 0 + len(SEEN)\n")


def test_successive_frames_match_one_shot_runs():
    with SignalSession(SMA, {"n": 7}, limits=LIMITS) as s:
        for k in (300, 301, 302, 450):
            got = s(DATA.iloc[:k])
            ref = run_signals(SMA, DATA.iloc[:k], {"n": 7})
            assert got.index.equals(DATA.index[:k])
            assert got.equals(ref)
        assert s.evaluations == 4 and s.children == 1
        assert "evaluations=4" in repr(s)


def test_globals_persist_within_one_session_only():
    a = SignalSession(COUNTER, limits=LIMITS)
    b = SignalSession(COUNTER, limits=LIMITS)
    try:
        assert [float(a(DATA.iloc[:50]).iloc[-1]) for _ in range(3)] == [1.0, 2.0, 3.0]
        assert float(b(DATA.iloc[:50]).iloc[-1]) == 1.0  # another deployment's child: its own globals
    finally:
        a.close()
        b.close()


def test_an_endless_evaluation_is_stopped_and_the_next_call_gets_a_fresh_child():
    code = ("CALLS = []\n"
            "def signals(data):\n"
            "    CALLS.append(1)\n"
            "    while len(CALLS) == 2:\n"
            "        pass\n"
            "    return data.close * 0 + len(CALLS)\n")
    with SignalSession(code, limits=LIMITS) as s:
        assert float(s(DATA).iloc[-1]) == 1.0
        with pytest.raises(SandboxError) as info:
            s(DATA)
        assert info.value.kind == "timeout" and "3 s" in str(info.value)
        assert float(s(DATA).iloc[-1]) == 1.0  # fresh child, fresh globals
        assert s.children == 2


def test_the_strategy_own_error_keeps_the_child():
    code = "def signals(data):\n    if len(data) > 100:\n        return data.close / undefined\n    return data.close * 0\n"
    with SignalSession(code, limits=LIMITS) as s:
        s(DATA.iloc[:50])
        with pytest.raises(SignalError) as info:
            s(DATA)
        assert info.value.line == 3
        assert float(s(DATA.iloc[:60]).sum()) == 0.0
        assert s.children == 1


HOSTILE = [c for c in corpus.HOSTILE if c[2] in ("forbidden", "output", "raised")]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_code_is_stopped_on_a_later_bar(case, tmp_path):
    _, code, kind, words = case
    # the first bar is harmless; the hostile body runs from the second bar on
    body = code.replace("{scratch}", str(tmp_path)).replace("def signals(data", "def _bad(data", 1)
    wrapped = body + "\nN = []\ndef signals(data):\n    N.append(1)\n    if len(N) == 1:\n        return data.close * 0\n" \
                     "    return _bad(data)\n"
    with SignalSession(wrapped, limits=LIMITS, on_log=lambda s: None) as s:
        s(DATA)
        with pytest.raises(SignalError if kind == "raised" else SandboxError) as info:
            s(DATA)
    msg = str(info.value)
    if kind != "raised":
        assert info.value.kind == kind, msg
    for w in words[1:]:
        assert w in msg, msg
    assert list(tmp_path.iterdir()) == []
