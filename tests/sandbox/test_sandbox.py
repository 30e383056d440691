"""The sandbox through its Python API: the static check, the process layers, limits, isolation.

Every hostile snippet of the corpus is run for real (fork, seccomp, Landlock, audit hook);
``RUNTIME`` snippets bypass the static check to prove the process layers hold on their own.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantlab.engine import data as qdata
from quantlab.engine import sandbox
from quantlab.engine.backtest import SignalError, backtest
from quantlab.engine.sandbox import SandboxError, SandboxLimits, check_code, run_signals



def _corpus():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sandbox_corpus", Path(__file__).with_name("corpus.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


corpus = _corpus()
descendants = corpus.descendants

pytestmark = pytest.mark.timeout(120)

DATA = qdata.synthetic(2_000, seed=3)
LIMITS = SandboxLimits(cpu_seconds=5, wall_seconds=8, memory_mb=1536, output_bytes=50_000)


def _fill(code: str, scratch: Path) -> str:
    return code.replace("{scratch}", str(scratch))


def _run_unchecked(code: str, limits: SandboxLimits = LIMITS):
    """Run code in the sandboxed child WITHOUT the static check (the process layers alone)."""
    from quantlab.engine.sandbox import decode_signals
    from quantlab.engine.sandbox._runner import SharedData, run_frames

    task = {"code": code, "name": "unchecked", "combos": [{}], "allow": sorted(sandbox.allowed_modules() | {
        "os", "subprocess", "socket", "ctypes", "time"}), "batch": False}
    sd = SharedData(DATA)
    out = []
    try:
        for header, body in run_frames(task, sd, limits):
            if header["t"] in ("hello", "inspect", "done"):
                out.append(header)
                continue
            value = decode_signals(header, body, DATA, "unchecked", limits)
            if isinstance(value, BaseException):
                raise value
            out.append(value)
    finally:
        sd.close()
    return out


STATIC = [c for c in corpus.HOSTILE if c[2] == "static"]
DYNAMIC = [c for c in corpus.HOSTILE if c[2] != "static"]


@pytest.mark.parametrize("case", STATIC, ids=[c[0] for c in STATIC])
def test_static_check_refuses_and_names_the_line(case):
    _, code, _, words = case
    with pytest.raises(SandboxError) as info:
        check_code(code)
    assert info.value.kind == "static"
    for w in words:
        assert w in str(info.value), str(info.value)
    assert info.value.line == int(words[0].split()[1])


@pytest.mark.parametrize("case", DYNAMIC, ids=[c[0] for c in DYNAMIC])
def test_hostile_code_is_stopped_at_run_time(case, scratch, secret_env):
    _, code, kind, words = case
    check_code(_fill(code, scratch))  # these pass the static check: the process layers must stop them
    exc_type = SignalError if kind == "raised" else SandboxError
    with pytest.raises(exc_type) as info:
        run_signals(_fill(code, scratch), DATA, limits=LIMITS, on_log=lambda s: None)
    msg = str(info.value)
    if kind != "raised":
        assert info.value.kind in ({"timeout", "cpu"} if kind == "timeout" else {kind}), msg
    for w in words:
        assert w in msg, msg
    assert secret_env not in msg
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("case", corpus.RUNTIME, ids=[c[0] for c in corpus.RUNTIME])
def test_process_layers_hold_without_the_static_check(case, scratch):
    _, code, words = case
    with pytest.raises(SandboxError) as info:
        _run_unchecked(_fill(code, scratch))
    msg = str(info.value)
    assert info.value.kind == "forbidden", msg
    for w in words:
        assert w in msg, msg
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("case", corpus.ALLOWED, ids=[c[0] for c in corpus.ALLOWED])
def test_allowed_code_runs_and_matches_in_process(case):
    _, code = case
    logs: list[str] = []
    inside = backtest(DATA, code, sandbox=LIMITS.to_dict())
    outside = backtest(DATA, code)
    same = {k: v == outside.metrics[k] or (v != v and outside.metrics[k] != outside.metrics[k])
            for k, v in inside.metrics.items()}
    assert all(same.values()), same
    assert inside.run_id == outside.run_id
    run_signals(code, DATA, on_log=logs.append)
    if "print" in code:
        assert "hello from the strategy" in "".join(logs)


def test_secrets_are_not_in_the_environment(secret_env):
    code = ("import os\ndef signals(data):\n"
            "    return data.close * 0 + float(any('sk-test' in v for v in os.environ.values()))\n")
    out = [v for v in _run_unchecked(code) if isinstance(v, pd.Series)]
    assert float(out[0].sum()) == 0.0
    zygote = sandbox._runner.zygote()
    env = Path(f"/proc/{zygote.proc.pid}/environ").read_bytes()
    assert secret_env.encode() not in env and b"QUANTLAB_TEST_API_KEY" not in env


def test_kernel_layers_are_on_in_the_child():
    import threading

    seen: dict[str, str] = {}
    code = "import time\ndef signals(data):\n    time.sleep(3)\n" + corpus.T

    def probe(header):
        pid = header["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        seen["status"] = status
        seen["netns"] = os.readlink(f"/proc/{pid}/ns/net")

    from quantlab.engine.sandbox._runner import SharedData, run_frames

    sd = SharedData(DATA)
    task = {"code": code, "name": "sleepy", "combos": [{}], "allow": sorted(sandbox.allowed_modules() | {"time"})}
    for header, _ in run_frames(task, sd, LIMITS):
        if header["t"] == "hello":
            assert header["mechanisms"]["seccomp"] and header["mechanisms"]["no_new_privs"]
            probe(header)
    sd.close()
    assert "Seccomp:\t2" in seen["status"] and "NoNewPrivs:\t1" in seen["status"]
    if os.geteuid() == 0:  # a new, empty network namespace needs CAP_SYS_ADMIN
        assert seen["netns"] != os.readlink("/proc/self/ns/net")


def test_a_run_cannot_change_what_the_next_run_sees():
    patch = "import numpy as np\nimport pandas as pd\nnp.mean = lambda *a, **k: 42.0\npd.Series.rolling = None\n" \
            "def signals(data):\n    return data.close * 0 + (np.mean([1.0]) == 42.0)\n"
    assert float(run_signals(patch, DATA).sum()) == len(DATA)  # the patch works inside its own run
    clean = "import numpy as np\ndef signals(data):\n    return data.close.rolling(3).mean().notna() * (np.mean([1.0, 3.0]) == 2.0)\n"
    assert float(run_signals(clean, DATA).sum()) == len(DATA) - 2
    assert np.mean([1.0, 3.0]) == 2.0  # and this process was never touched


def test_print_goes_to_the_log_not_the_result():
    code = "def signals(data):\n    print('{\"t\": \"signals\"}' * 100)\n    return data.close * 0 + 0.5\n"
    logs: list[str] = []
    out = run_signals(code, DATA, on_log=logs.append)
    assert float(out.sum()) == 0.5 * len(DATA) and "signals" in "".join(logs)


def test_strategy_error_names_its_own_line_and_no_host_files():
    code = "import pandas as pd\n\ndef signals(data):\n    x = data.close\n    return x / undefined\n"
    with pytest.raises(SignalError) as info:
        run_signals(code, DATA)
    assert "NameError" in str(info.value) and "line 5" in str(info.value) and info.value.line == 5
    assert "site-packages" not in str(info.value) and "/quantlab/" not in str(info.value)


def test_sweep_style_many_combinations_in_one_child():
    code = "def signals(data, n=5):\n    return (data.close > data.close.rolling(n).mean()) * 1.0\n"
    got = dict(sandbox.iter_signals(code, DATA, [{"n": 5}, {"n": 10}, {"n": "bad"}], limits=LIMITS))
    assert set(got) == {0, 1, 2}
    assert isinstance(got[2], SignalError)
    ref = backtest(DATA, code, {"n": 10}).positions
    assert float(got[1].sum()) == float(((DATA.close > DATA.close.rolling(10).mean()) * 1.0).sum())
    assert len(ref) == len(DATA)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="processes"):
        SandboxLimits(processes=2)
    with pytest.raises(ValueError, match="unknown sandbox limit"):
        SandboxLimits.coerce({"cpu": 1})


def test_allowlist_extends_from_config(tmp_path, monkeypatch):
    (tmp_path / "quantlab.toml").write_text('[tool.quantlab.sandbox]\nallow = ["json"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUANTLAB_SANDBOX_ALLOW", "csv")
    check_code("import json, csv\ndef signals(data):\n" + corpus.T)
    monkeypatch.setenv("QUANTLAB_SANDBOX_ALLOW", "os")  # never allowed, whatever the configuration says
    with pytest.raises(SandboxError, match="import os"):
        check_code("import os\ndef signals(data):\n" + corpus.T)


def test_no_process_is_left_behind():
    since = time.time() - 1  # only what this test starts (other areas' tests may still own children)
    run_signals("def signals(data):\n" + corpus.T, DATA)
    import psutil

    zpid = sandbox._runner.zygote().proc.pid
    waiting = {p.pid for p in psutil.Process(zpid).children()}
    assert len(waiting) <= 1  # at most the one child the zygote forks ahead for the next run
    left = descendants(since) - {zpid} - waiting
    assert not left, left  # every run's child is gone once its run returns
    sandbox.shutdown()
    deadline = time.monotonic() + 10
    while zpid in descendants() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert zpid not in descendants()
