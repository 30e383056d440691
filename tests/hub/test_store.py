"""AssetsHub.store and reading back, against real Git repositories."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime, timezone

import git as gitpython
import pytest

from quantlab.engine.backtest import backtest
from quantlab.engine.data import bar_size
from quantlab.engine.strategy import Strategy, StrategyError
from quantlab.hub import AssetsHub, DetachedHeadError, HubError, IndexLockError, SecretsFoundError, StoredStrategy
from quantlab.hub.message import format_bar_size

FIXED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def test_new_hub_has_initial_commit_with_readme(hub, git):
    assert git(hub.path, "log", "--format=%s").strip() == "Create the quantlab assets hub"
    assert git(hub.path, "ls-files").split() == ["README.md"]
    assert hub.branch == "main"
    assert hub.strategies().empty
    assert "strategies=0" in repr(hub)


def test_commit_message_byte_for_byte(hub, strategy, result, git):
    hub._clock = lambda: FIXED
    stored = hub.store(strategy, result)
    m = result.metrics
    expected = (
        "Strategy: SMA cross\n"
        "Backtest Results:\n"
        f"  - Sharpe Ratio: {m['sharpe']:.2f}\n"
        f"  - Max Drawdown: {m['max_drawdown'] * 100:.2f}%\n"
        f"  - Profit Factor: {m['profit_factor']:.2f}\n"
        "  - Generated: 2026-03-04T05:06:07+00:00\n"
        "\n"
        f"Quantlab-Run: {result.run_id}\n"
        f"Quantlab-Code-SHA256: {strategy.sha256}\n"
    )
    # then what the numbers mean: params, data, bar size, costs (the seed's message stays first, unchanged)
    p, c = result.params, result.costs
    expected += (
        f"Quantlab-Params: {json.dumps(p, sort_keys=True)}\n"
        + (f"Quantlab-Data: {result.data_ref}\n" if result.data_ref else "")
        + f"Quantlab-Bar-Size: {format_bar_size(bar_size(result.equity.index).total_seconds())}\n"
        f"Quantlab-Costs: fees={c['fees']:g} slippage={c['slippage']:g} cash={c['cash']:g}\n"
    )
    # %B adds one newline after the raw message; the commit object holds it exactly
    assert git(hub.path, "log", "-1", "--format=%B") == expected + "\n"
    raw = git(hub.path, "cat-file", "commit", "HEAD")
    assert raw.split("\n\n", 1)[1] == expected
    assert stored.commit == git(hub.path, "rev-parse", "HEAD").strip()
    assert stored.path.name == "sma-cross_20260304-050607.py"


def test_trailers_parse_with_real_git(hub, strategy, result, git):
    hub.store(strategy, result)
    message = git(hub.path, "log", "-1", "--format=%B")
    parsed = git(hub.path, "interpret-trailers", "--parse", input=message)
    assert parsed.startswith(f"Quantlab-Run: {result.run_id}\nQuantlab-Code-SHA256: {strategy.sha256}\n")
    keys = [line.split(":", 1)[0] for line in parsed.splitlines()]
    assert {"Quantlab-Params", "Quantlab-Bar-Size", "Quantlab-Costs"} <= set(keys)
    only = git(hub.path, "log", "-1", "--format=%(trailers:key=Quantlab-Run,valueonly)").strip()
    assert only == result.run_id


def test_inf_profit_factor_and_negative_drawdown_formatting(hub, strategy, git):
    metrics = {"sharpe": 2.0, "max_drawdown": -0.05, "profit_factor": float("inf"), "trades": 3}
    hub.store(strategy, {"metrics": metrics, "run_id": "r-inf", "params": {"fast": 5, "slow": 20}})
    body = git(hub.path, "log", "-1", "--format=%B")
    assert "  - Profit Factor: inf\n" in body and "  - Max Drawdown: 5.00%\n" in body
    row = hub.strategies().iloc[0]
    assert row["profit_factor"] == float("inf")


def test_files_and_metadata(hub, strategy, result, git, sma_code):
    stored = hub.store(strategy, result, source={"generator": "agent-x", "model": "m-1"})
    files = sorted(git(hub.path, "show", "--name-only", "--format=", "HEAD").split())
    assert files == [f"generated_bots/{stored.path.stem}.json", f"generated_bots/{stored.path.stem}.py"]
    assert stored.path.read_text() == sma_code
    meta = json.loads(stored.metadata_path.read_text())
    assert meta["name"] == "SMA cross" and meta["code_sha256"] == strategy.sha256 == stored.sha256
    assert meta["params"] == {"fast": 5, "slow": 20}
    assert meta["data_ref"] == "synthetic:seed=7,bars=600"
    assert meta["costs"]["fees"] == 0.0005
    assert meta["run_id"] == result.run_id
    assert meta["source"] == {"generator": "agent-x", "model": "m-1", "type": "generator"}
    assert meta["quantlab_version"]
    assert meta["metrics"]["trades"] == result.metrics["trades"]
    assert isinstance(stored, StoredStrategy) and "SMA cross" in repr(stored) and "<table>" in stored._repr_html_()


def test_store_result_alone_uses_its_strategy(hub, result):
    stored = hub.store(result, source="notebook cell")
    assert stored.name == "SMA cross" and stored.metadata["source"] == {"type": "notebook cell"}


def test_duplicate_store_in_same_second(hub, strategy, result):
    hub._clock = lambda: FIXED
    a = hub.store(strategy, result)
    b = hub.store(strategy, result)
    c = hub.store(strategy, result)
    assert [s.path.name for s in (a, b, c)] == [
        "sma-cross_20260304-050607.py", "sma-cross_20260304-050607-2.py", "sma-cross_20260304-050607-3.py"]
    assert len({a.commit, b.commit, c.commit}) == 3
    assert len(hub.history("SMA cross")) == 3
    assert hub.find(strategy.sha256, result.params).commit == c.commit  # newest


def test_dirty_tree_unrelated_changes_stay_uncommitted(hub, strategy, result, git):
    (hub.path / "notes.txt").write_text("v1\n")
    (hub.path / "scratch.txt").write_text("a\n")
    git(hub.path, "add", "notes.txt", "scratch.txt")
    git(hub.path, "commit", "-q", "-m", "user files")
    (hub.path / "notes.txt").write_text("v2 staged\n")
    git(hub.path, "add", "notes.txt")
    (hub.path / "scratch.txt").write_text("b unstaged\n")
    (hub.path / "untracked.txt").write_text("u\n")
    before = git(hub.path, "status", "--porcelain")
    stored = hub.store(strategy, result)
    assert git(hub.path, "status", "--porcelain") == before
    assert git(hub.path, "diff", "--cached", "--name-only").split() == ["notes.txt"]
    assert git(hub.path, "show", "HEAD:notes.txt") == "v1\n"
    changed = git(hub.path, "show", "--name-only", "--format=", stored.commit).split()
    assert all(p.startswith("generated_bots/") for p in changed) and len(changed) == 2


def test_index_lock_held_fails_clearly_and_leaves_no_trace(hub, strategy, result, git):
    lock = hub.path / ".git" / "index.lock"
    lock.write_text("")
    head = git(hub.path, "rev-parse", "HEAD")
    with pytest.raises(IndexLockError) as info:
        hub.store(strategy, result)
    assert str(lock) in str(info.value) and "delete" in str(info.value)
    lock.unlink()
    assert git(hub.path, "rev-parse", "HEAD") == head
    assert git(hub.path, "status", "--porcelain", "--untracked-files=all") == ""
    assert hub.store(strategy, result).commit != head.strip()


def test_index_lock_released_during_retry_succeeds(hub, strategy, result, git):
    lock = hub.path / ".git" / "index.lock"
    lock.write_text("")
    timer = threading.Timer(0.3, lock.unlink)
    timer.start()
    try:
        stored = hub.store(strategy, result)
    finally:
        timer.join()
    assert git(hub.path, "log", "-1", "--format=%H").strip() == stored.commit


def test_detached_head_is_refused(hub, strategy, result, git):
    git(hub.path, "checkout", "-q", "--detach")
    with pytest.raises(DetachedHeadError, match="detached HEAD.*git -C .* switch main"):
        hub.store(strategy, result)
    assert not (hub.path / "generated_bots").exists() or not any((hub.path / "generated_bots").iterdir())
    with pytest.raises(DetachedHeadError):
        hub.record_deployment({"strategy_name": "x", "status": "pending"})
    git(hub.path, "switch", "-q", "main")
    hub.store(strategy, result)


def test_bad_code_is_refused(hub, result, git):
    with pytest.raises(StrategyError, match="no top-level `signals`"):
        hub.store("x = 1\n", result)
    with pytest.raises(StrategyError, match="syntax error on line 1"):
        hub.store("def signals(data:\n", result)
    assert git(hub.path, "rev-list", "--count", "HEAD").strip() == "1"


def test_secrets_refused_unless_allowed(hub, result, git, sma_code):
    code = sma_code + '\nAPI_KEY = "sk-abcdefghijklmnopqrstuvwxyz0123"\npassword = "hunter22"\n'
    leaky = Strategy.from_code(code, name="leaky")
    with pytest.raises(SecretsFoundError) as info:
        hub.store(leaky, result)
    msg = str(info.value)
    assert "line 9" in msg and "line 10" in msg and "allow_secrets=True" in msg
    assert "abcdefghijklmnop" not in msg  # the secret itself is not echoed
    assert [f.line for f in info.value.findings] == [9, 10]
    assert [x.split(":")[0] for x in hub.preview(leaky, result)["secrets"]] == ["line 9", "line 10"]
    assert git(hub.path, "rev-list", "--count", "HEAD").strip() == "1"
    stored = hub.store(leaky, result, allow_secrets=True)
    assert stored.path.read_text() == code


def test_strategies_history_load_diff_find(hub, strategy, result, data, sma_code):
    v1 = hub.store(strategy, result)
    code2 = sma_code.replace("fast=5", "fast=8")
    s2 = Strategy.from_code(code2, name="SMA cross")
    r2 = backtest(data, s2)
    v2 = hub.store(s2, r2)
    other = hub.store(Strategy.from_code("def signals(data):\n    return data.close * 0 + 1\n", name="Buy & hold"), r2)
    frame = hub.strategies()
    assert list(frame.columns[:7]) == ["name", "file", "commit", "date", "sharpe", "max_drawdown", "profit_factor"]
    assert list(frame["commit"]) == [other.commit, v2.commit, v1.commit]
    assert frame.loc[1, "sharpe"] == pytest.approx(r2.metrics["sharpe"])
    assert str(frame["date"].dtype).startswith("datetime64")
    hist = hub.history("SMA cross")
    assert list(hist["commit"]) == [v2.commit, v1.commit]
    assert list(hub.history("sma-cross")["commit"]) == [v2.commit, v1.commit]  # slug works too
    assert hub.load("SMA cross").params == {"fast": 8, "slow": 20}
    assert hub.load(v1.commit).params == {"fast": 5, "slow": 20}
    assert hub.load(v1.commit[:9]).code == sma_code
    assert hub.load(v1.file).code == sma_code
    assert hub.load(str(v1.path)).code == sma_code
    assert hub.load(v1.path.with_suffix(".json").name).code == sma_code
    assert hub.load("Buy & hold").name == "Buy & hold"
    d = hub.diff(v1.commit, "SMA cross")
    assert "-def signals(data, fast=5, slow=20):" in d and "+def signals(data, fast=8, slow=20):" in d
    assert d.startswith(f"--- {v1.file}@{v1.commit[:12]}")
    assert "<pre>" in d._repr_html_()
    assert hub.diff(v1.commit, v1.commit) == ""
    assert hub.find(strategy.sha256, {"fast": 5, "slow": 20}).commit == v1.commit
    assert hub.find(strategy.sha256, {"fast": 6, "slow": 20}) is None
    assert hub.find("0" * 64) is None
    with pytest.raises(HubError, match="Did you mean 'SMA cross'"):
        hub.load("SMA crosss")
    ledger_commit = hub.record_deployment({"strategy_name": "SMA cross", "status": "pending", "commit": v2.commit})
    with pytest.raises(HubError, match="did not store a strategy"):
        hub.load(ledger_commit)


def test_preview_writes_nothing(hub, strategy, result, git):
    hub._clock = lambda: FIXED
    before = git(hub.path, "status", "--porcelain", "--untracked-files=all")
    p = hub.preview(strategy, result)
    assert git(hub.path, "status", "--porcelain", "--untracked-files=all") == before
    assert p["path"] == "generated_bots/sma-cross_20260304-050607.py" and p["name"] == "SMA cross"
    assert p["message"].startswith("Strategy: SMA cross\nBacktest Results:\n")
    assert p["metadata"]["code_sha256"] == strategy.sha256 and p["secrets"] == []
    stored = hub.store(strategy, result)
    assert stored.file == p["path"]
    assert git(hub.path, "log", "-1", "--format=%B") == p["message"] + "\n"
    assert hub.preview(strategy, result)["path"].endswith("-2.py")


def test_existing_repo_used_as_is_and_remote_push(tmp_path, strategy, result, git):
    repo = tmp_path / "existing"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    (repo / "README.md").write_text("mine\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "mine")
    bare = tmp_path / "remote.git"
    gitpython.Repo.init(bare, bare=True)
    with AssetsHub(repo, remote=str(bare), author=("A", "a@x")) as hub:
        assert hub.branch == "trunk"
        assert (repo / "README.md").read_text() == "mine\n"
        stored = hub.store(strategy, result)
        assert hub.push() == "trunk"
        assert git(bare, "rev-parse", "trunk").strip() == stored.commit
        assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == "A <a@x>"
    with pytest.raises(HubError, match="already points to"):
        AssetsHub(repo, remote=str(tmp_path / "elsewhere.git"))


def test_unborn_existing_repo_and_missing_hub(tmp_path, strategy, result, git, sma_code):
    repo = tmp_path / "empty"
    gitpython.Repo.init(repo)
    with AssetsHub(repo, author="X <x@y>") as hub:
        assert hub.strategies().empty and hub.log().empty
        stored = hub.store(strategy, result)
        assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
        assert hub.load(stored.commit).code == sma_code
    with pytest.raises(HubError, match="no assets hub at"):
        AssetsHub(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_push_failure_keeps_commit(tmp_path, strategy, result):
    with AssetsHub(tmp_path / "h", remote=str(tmp_path / "missing.git"), author="A <a@b>") as hub:
        stored = hub.store(strategy, result)
        with pytest.raises(HubError, match="local commits are kept"):
            hub.push()
        assert hub.get("SMA cross").commit == stored.commit


def test_default_identity_without_git_config(tmp_path, strategy, result, monkeypatch, git):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    with AssetsHub(tmp_path / "h") as hub:
        hub.store(strategy, result)
        assert git(hub.path, "log", "-1", "--format=%an <%ae>").strip() == "quantlab <quantlab@localhost>"


def test_hub_repr_html(hub, strategy, result):
    hub.store(strategy, result)
    assert "strategies=1" in repr(hub)
    html = hub._repr_html_()
    assert "SMA cross" in html and "AssetsHub" in html
    assert os.fspath(hub.path) in html


def test_concurrent_stores_from_two_hub_objects(hub, strategy, result, git):
    """Two hub objects (two GitPython repos, real git processes racing for index.lock) in the same second."""
    other = AssetsHub(hub.path, lock_timeout=10.0)
    hub.lock_timeout = 10.0
    errors: list[BaseException] = []
    stored: list[StoredStrategy] = []

    def work(h):
        h._clock = lambda: FIXED
        try:
            for _ in range(3):
                stored.append(h.store(strategy, result))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(h,)) for h in (hub, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    assert len({s.path for s in stored}) == 6 and len({s.commit for s in stored}) == 6
    for s in stored:  # each record names the commit that stored *its* files
        assert s.file in git(hub.path, "show", "--name-only", "--format=", s.commit).split()
    assert git(hub.path, "rev-list", "--count", "HEAD").strip() == "7"
    assert git(hub.path, "status", "--porcelain", "--untracked-files=all") == ""
    assert len(hub.strategies()) == 6


def test_other_git_failures_are_reported(hub, strategy, result, git):
    (hub.path / "f.txt").write_text("1\n")
    git(hub.path, "add", "f.txt")
    git(hub.path, "commit", "-q", "-m", "f")
    git(hub.path, "switch", "-q", "-c", "side")
    (hub.path / "f.txt").write_text("side\n")
    git(hub.path, "commit", "-q", "-am", "side")
    git(hub.path, "switch", "-q", "main")
    (hub.path / "f.txt").write_text("main\n")
    git(hub.path, "commit", "-q", "-am", "main")
    subprocess.run(["git", "-C", str(hub.path), "merge", "-q", "side"], capture_output=True)  # conflict: merge in progress
    with pytest.raises(HubError, match="git commit failed in .*partial commit during a merge"):
        hub.store(strategy, result)
    assert not any((hub.path / "generated_bots").glob("*.py"))  # rolled back
    assert git(hub.path, "ls-files", "generated_bots") == ""  # and unstaged
    with pytest.raises(HubError, match="is a file"):
        AssetsHub(hub.path / "f.txt")


@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "CON", "日本語", "a\tb\nc", "x" * 400, ".."])
def test_nasty_names_stored_inside_generated_bots(hub, strategy, result, name, git):
    s = Strategy.from_code(strategy.code, name=name)
    stored = hub.store(s, result)
    bots = (hub.path / "generated_bots").resolve()
    assert stored.path.resolve().parent == bots
    assert all(f.startswith("generated_bots/") and "/" not in f[len("generated_bots/"):]
               for f in git(hub.path, "show", "--name-only", "--format=", stored.commit).split())
    assert git(hub.path, "log", "-1", "--format=%s").strip().startswith("Strategy: ")
    assert git(hub.path, "log", "-1", "--format=%B").startswith(f"Strategy: {' '.join(s.name.split())}\nBacktest Results:\n")
    assert hub.get(stored.commit).name == s.name
    assert stored.to_dict()["commit"] == stored.commit
    assert hub.quantlab_dir.is_dir() and not git(hub.path, "status", "--porcelain", "--untracked-files=all")
