"""The offline generator, replay, storing a generation in the hub, lab.state and model resolution."""
from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from quantlab.agent import OFFLINE_LABEL, AgentError, ModelConfig, ModelUnavailable, resolve_model
from quantlab.lab import DeploymentPolicy, LabError, PolicyError


@pytest.fixture(scope="module")
def offline_gen(lab):
    return lab.generate("trend following on hourly bars, long only", model="offline", max_attempts=5)  # passes with costs


def test_offline_says_so_everywhere_and_never_poses_as_an_llm(offline_gen):
    gen = offline_gen
    assert gen.stop_reason == "passed" and gen.best is not None
    assert OFFLINE_LABEL in gen.model and OFFLINE_LABEL in repr(gen) and OFFLINE_LABEL in gen._repr_html_()
    assert all(OFFLINE_LABEL in c.rationale for c in gen.attempts)
    assert gen.notes[0] == f"model: {OFFLINE_LABEL}"
    assert {e["role"] for e in gen.transcript} <= {"meta", "generator", "check"}     # no assistant, no system prompt
    assert gen.usage == {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "attempts": len(gen.attempts)}
    # it searched: every failed attempt failed a check and the next one changed the code
    assert all(c.status.startswith("failed: ") for c in gen.attempts[:-1])
    assert all(d for d in gen.diffs()[1:])


def test_offline_checks_run_cheapest_first(offline_gen):
    names = [c.name for c in offline_gen.best.checks]
    assert names == ["parses", "defines signals", "sandbox", "runs on 500 bars", "causal", "backtest", "policy"]
    assert offline_gen.best.checks[4].status == "pass"          # check_lookahead ran
    assert offline_gen.best.result.run_id


def test_offline_words_pick_blocks(lab):
    gen = lab.generate("RSI mean reversion when volatility is calm", model="offline", max_attempts=2,
                       policy=DeploymentPolicy(min_sharpe=None, max_drawdown=None, min_profit_factor=None, min_trades=None))
    assert gen.best is gen.attempts[0]
    assert "volatility filter" in gen.best.name and "vol_window" in gen.best.code


def test_budget_and_attempt_limits(lab):
    strict = DeploymentPolicy(min_sharpe=50)
    gen = lab.generate("momentum", model="offline", max_attempts=2, policy=strict)
    assert gen.stop_reason == "max_attempts" and len(gen.attempts) == 2 and gen.best is None
    assert all(c.status == "failed: policy" and "sharpe" in c.checks[-1].detail for c in gen.attempts)
    with pytest.raises(ValueError, match="max_attempts"):
        lab.generate("momentum", model="offline", max_attempts=0)
    with pytest.raises(TypeError, match="backtest costs"):
        lab.generate("momentum", model="offline", feez=0.1)


def test_replay_reproduces_the_generation(lab, offline_gen, tmp_path):
    path = offline_gen.save(tmp_path / "gen.json")
    again = lab.generate(offline_gen.idea, model=f"replay:{path}", max_attempts=5)
    assert [c.code for c in again.attempts] == [c.code for c in offline_gen.attempts]
    assert [c.status for c in again.attempts] == [c.status for c in offline_gen.attempts]
    assert again.best.result.metrics == offline_gen.best.result.metrics
    assert again.model.startswith(f"replay:{path}") and "no network" in again.model
    with pytest.raises(AgentError, match="replay: no file"):
        lab.generate("x", model=f"replay:{tmp_path / 'missing.json'}")


def test_store_keeps_transcript_and_trailers(lab, offline_gen):
    stored = lab.store(offline_gen.best)
    hub = lab.hub.path
    transcript = stored.path.with_suffix(".transcript.jsonl")
    assert transcript.is_file() and transcript.parent.name == "generated_bots"
    body = transcript.read_bytes()
    assert body.decode() == offline_gen.transcript_jsonl()
    msg = subprocess.run(["git", "-C", str(hub), "log", "-1", "--format=%B", stored.commit],
                         capture_output=True, text=True, check=True).stdout
    assert msg.startswith(f"Strategy: {offline_gen.best.name}\nBacktest Results:\n  - Sharpe Ratio: ")
    trailers = subprocess.run(["git", "-C", str(hub), "log", "-1", "--format=%(trailers:only,unfold)", stored.commit],
                              capture_output=True, text=True, check=True).stdout
    assert f"Quantlab-Model: {offline_gen.model}" in trailers
    assert f"Quantlab-Attempts: {len(offline_gen.attempts)}" in trailers
    assert f"Quantlab-Transcript-SHA256: {hashlib.sha256(body).hexdigest()}" in trailers
    meta = json.loads(stored.path.with_suffix(".json").read_text())
    assert meta["source"]["type"] == "generator" and meta["generation"]["attempts"] == len(offline_gen.attempts)
    # replay from the hub's own transcript gives the same code
    again = lab.generate(offline_gen.idea, model=f"replay:{transcript}", max_attempts=5)
    assert again.best.code == offline_gen.best.code
    # the same result through store_and_deploy's path (gen.best.result) is the same stored strategy
    assert lab.store(offline_gen.best.result).commit == stored.commit


def test_failed_candidate_needs_force(lab):
    gen = lab.generate("momentum", model="offline", max_attempts=1, policy=DeploymentPolicy(min_sharpe=50))
    with pytest.raises(LabError, match="no candidate that passed"):
        lab.store(gen)
    with pytest.raises(PolicyError):
        lab.store(gen.attempts[0])
    with pytest.raises(PolicyError):
        lab.store_and_deploy(gen.attempts[0])
    stored = lab.store(gen.attempts[0], force=True)
    assert stored.path.with_suffix(".transcript.jsonl").is_file()


def test_state_counts_generations_tokens_cost(lab):
    before = lab.state()
    lab.generate("momentum", model="offline", max_attempts=1)
    after = lab.state()
    assert after["generations"] == before["generations"] + 1
    assert set(after["tokens"]) == {"input", "output"} and "cost_usd" in after
    assert json.loads(lab.state_path.read_text())["generations"] == after["generations"]


def test_to_dict_and_frame(offline_gen):
    d = json.loads(json.dumps(offline_gen.to_dict()))
    assert d["best"] == offline_gen.best.attempt and len(d["attempts"]) == len(offline_gen.attempts)
    assert {"code", "params", "rationale", "checks", "metrics", "input_tokens", "cost_usd", "seconds"} <= set(d["attempts"][0])
    frame = offline_gen.to_frame()
    assert list(frame["attempt"]) == [c.attempt for c in offline_gen.attempts]
    html = offline_gen._repr_html_()
    assert html.count("<tr>") == len(offline_gen.attempts) + 1 and "diff from attempt 1" in html


def test_model_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("QUANTLAB_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-123")
    assert resolve_model(directory=tmp_path).model == "offline"
    monkeypatch.setenv("QUANTLAB_MODEL", "openai:gpt-4.1-mini")
    cfg = resolve_model(directory=tmp_path)
    assert (cfg.model, cfg.api_key, cfg.source) == ("openai:gpt-4.1-mini", "sk-env-key-123", "QUANTLAB_MODEL")
    (tmp_path / "pyproject.toml").write_text('[tool.quantlab.llm]\nmodel = "openai:qwen2.5-coder"\n'
                                             'base_url = "http://127.0.0.1:11434/v1"\ntimeout = 7\n')
    cfg = resolve_model(directory=tmp_path)
    assert (cfg.model, cfg.base_url, cfg.timeout) == ("openai:qwen2.5-coder", "http://127.0.0.1:11434/v1", 7.0)
    (tmp_path / "quantlab.toml").write_text('[llm]\nmodel = "anthropic:claude-sonnet-4-5"\napi_key_env = "MY_KEY"\n')
    monkeypatch.setenv("MY_KEY", "sk-ant-mine-456")
    cfg = resolve_model(directory=tmp_path)
    assert (cfg.provider, cfg.api_key) == ("anthropic", "sk-ant-mine-456")
    assert "sk-ant-mine-456" not in repr(cfg)
    assert resolve_model("openai:x", directory=tmp_path).model == "openai:x"     # arguments win
    with pytest.raises(ModelUnavailable, match="unknown model provider 'gemini'"):
        resolve_model("gemini:pro")
    assert resolve_model(ModelConfig("openai:a"), timeout=3).timeout == 3


def test_review_compares_attempts_and_shows_the_best(offline_gen):
    import quantlab

    rv = quantlab.review(offline_gen)
    tried = [c for c in offline_gen.attempts if c.run_id]
    assert len(rv.results) == len(tried) and rv.selected == tried.index(offline_gen.best)
    assert rv.result.metrics == offline_gen.best.metrics
