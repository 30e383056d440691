"""What reaches the hub: no secret anywhere in a commit, and the user's .gitignore is respected."""
from __future__ import annotations

import pytest

from quantlab import backtest, data
from quantlab.hub import AssetsHub, SecretsFoundError

KEY = "sk-" + "proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3"


@pytest.fixture()
def hub(tmp_path):
    with AssetsHub(tmp_path / "hub") as h:
        yield h


def _result(strategy):
    return backtest(data.sample(), strategy, {"fast": 5, "slow": 30})


def _nothing_committed(hub, head):
    assert hub.repo.head.commit.hexsha == head
    assert not any((hub.path / "generated_bots").glob("*")) if (hub.path / "generated_bots").exists() else True


def test_key_in_the_strategy_name_is_refused_and_not_repeated(hub, strategy):
    head = hub.repo.head.commit.hexsha
    named = type(strategy).from_code(strategy.code, name=f"SMA {KEY}")
    with pytest.raises(SecretsFoundError, match="name") as info:
        hub.store(named, _result(strategy))
    assert KEY not in str(info.value)
    _nothing_committed(hub, head)


def test_key_in_params_is_refused(hub, strategy):
    head = hub.repo.head.commit.hexsha
    result = _result(strategy)
    result.params = {**result.params, "api_key": "hunter2-hunter2"}
    with pytest.raises(SecretsFoundError, match=r"params\['api_key'\]"):
        hub.store(strategy, result)
    result.params = {**result.params, "api_key": None, "note": f"key {KEY}"}
    with pytest.raises(SecretsFoundError, match=r"params\['note'\]"):
        hub.store(strategy, result)
    _nothing_committed(hub, head)


def test_key_in_source_is_refused(hub, strategy):
    head = hub.repo.head.commit.hexsha
    with pytest.raises(SecretsFoundError, match="source"):
        hub.store(strategy, _result(strategy), source={"type": "generator", "model": "m", "api_key": KEY})
    _nothing_committed(hub, head)


@pytest.mark.parametrize("code", [
    f'A = "{KEY[:10]}" "{KEY[10:]}"\n',
    f'A = ("{KEY[:10]}"\n     "{KEY[10:]}")\n',
    f'A = "{KEY[:10]}" + "{KEY[10:]}"\n',
    'X = "ghp_" "abcdefghijklmnopqrstuvwxyz0123456789"\n',
])
def test_key_split_across_adjacent_literals_is_refused(hub, strategy, code):
    head = hub.repo.head.commit.hexsha
    split = type(strategy).from_code(code + strategy.code, name="split")
    with pytest.raises(SecretsFoundError, match="line 1"):
        hub.store(split, _result(strategy))
    _nothing_committed(hub, head)


def test_preview_lists_every_finding(hub, strategy):
    named = type(strategy).from_code(strategy.code, name=f"SMA {KEY}")
    assert any(s.startswith("name:") for s in hub.preview(named, _result(strategy))["secrets"])


def test_an_ignored_deployments_jsonl_is_not_force_committed(tmp_path):
    repo = tmp_path / "repo"
    with AssetsHub(repo) as hub:
        (repo / ".gitignore").write_text("# local notes\ndeployments.jsonl\n")
        (repo / "deployments.jsonl").write_text('{"my": "own file"}\n')
        hub.repo.git.add(".gitignore")
        hub.repo.git.commit("-m", "ignore my deployments.jsonl", "--no-verify")
    with AssetsHub(repo) as hub:
        with pytest.warns(UserWarning, match=r"git-ignored.*\.gitignore:2: deployments\.jsonl.*\.quantlab/deployments-ledger\.jsonl"):
            sha = hub.record_deployment({"strategy_name": "SMA", "status": "running", "commit": "abc",
                                         "broker_deployment_id": "1"})
        # the user's file is untouched and never committed
        assert (repo / "deployments.jsonl").read_text() == '{"my": "own file"}\n'
        assert "deployments.jsonl" not in hub.repo.git.ls_files().splitlines()
        assert hub.repo.git.show("--name-only", "--format=", sha).split() == [".quantlab/deployments-ledger.jsonl"]
        assert hub.deployment_status()["broker_deployment_id"].tolist() == ["1"]
    with AssetsHub(repo) as again:  # a later process finds the tracked ledger without a warning
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert again.deployments()["broker_deployment_id"].tolist() == ["1"]
