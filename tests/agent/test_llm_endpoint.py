"""The agent loop against a real OpenAI-compatible HTTP server on 127.0.0.1 (the real provider
code path: pydantic-ai's OpenAI model and the openai SDK over HTTP), answering from a script."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quantlab.agent import ModelConfig, ModelUnavailable

# a long-only moving-average cross that passes the default policy on the sample data, after the default costs
GOOD = '''import numpy as np
import pandas as pd


def signals(data, fast=20, slow=100):
    fast_ma = data.close.rolling(int(fast)).mean()
    slow_ma = data.close.rolling(int(slow)).mean()
    return np.sign(fast_ma - slow_ma).clip(0.0, 1.0).fillna(0.0)
'''
SYNTAX = "def signals(data, fast=5, slow=30)\n    return data.close * 0\n"
LOOKAHEAD = '''import numpy as np


def signals(data, fast=5, slow=30):
    return np.sign(data.close.shift(-1) - data.close).fillna(0.0)
'''
ESCAPE = '''import os


def signals(data, fast=5, slow=30):
    os.system("echo hi")
    return data.close * 0
'''
KEY = "sk-test-QUANTLAB-secret-0123456789"


def answer(code=GOOD, name="SMA 20/100", params=None):
    return {"answer": {"name": name, "code": code, "params": params if params is not None else {"fast": 20, "slow": 100},
                       "rationale": "short fast cross on hourly bars"}}


def cfg(llm, **kw):
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 1)
    return ModelConfig("openai:gpt-4.1", base_url=llm.base_url, api_key=KEY, **kw)


def user_texts(request):
    return [m.get("content") for m in request["body"]["messages"] if m.get("role") in ("user", "tool")]


def test_correct_first_time(lab, llm):
    llm.script = [answer()]
    gen = lab.generate("fast moving-average cross", model=cfg(llm), max_attempts=3)
    assert gen.stop_reason == "passed" and gen.best is gen.attempts[0]
    assert [c.status for c in gen.best.checks if c.status == "fail"] == []
    assert gen.best.result.metrics["trades"] > 5
    assert gen.usage["input_tokens"] == 120 and gen.usage["output_tokens"] == 80
    assert gen.usage["cost_usd"] == pytest.approx((120 * 2 + 80 * 8) / 1e6)   # gpt-4.1's listed price
    assert len(llm.requests) == 1
    req = llm.requests[0]
    assert req["path"].endswith("/chat/completions") and req["headers"].get("authorization") == f"Bearer {KEY}"
    prompt = json.dumps(req["body"]["messages"])
    for needle in ("fast moving-average cross", "def signals(data, **params)", "open, high, low, close, volume",
                   "sharpe >= 0.5", "causal"):
        assert needle in prompt
    roles = [e["role"] for e in gen.transcript]
    assert roles[:2] == ["meta", "system"] and "user" in roles and "assistant" in roles
    assert gen.model.startswith("openai:gpt-4.1 at http://127.0.0.1:")


def test_syntax_error_then_fix(lab, llm):
    llm.script = [answer(SYNTAX), answer()]
    gen = lab.generate("moving-average cross", model=cfg(llm), max_attempts=3)
    first, second = gen.attempts
    assert first.status == "failed: parses" and "SyntaxError on line 1" in first.checks[-1].detail
    assert second.passed and gen.best is second
    feedback = user_texts(llm.requests[1])[-1]
    assert "failed the 'parses' check" in feedback and "SyntaxError on line 1" in feedback
    assert len(gen.diffs()) == 2 and "+    fast_ma" in gen.diffs()[1]


def test_lookahead_then_causal(lab, llm):
    llm.script = [answer(LOOKAHEAD), answer()]
    gen = lab.generate("tomorrow's move", model=cfg(llm), max_attempts=2)
    assert gen.attempts[0].status == "failed: causal"
    detail = gen.attempts[0].checks[-1].detail
    assert "looks ahead" in detail and "shift(-k)" in detail
    assert "failed the 'causal' check" in user_texts(llm.requests[1])[-1]
    assert gen.best is gen.attempts[1]


def _has_sandbox() -> bool:
    try:
        from quantlab.engine.sandbox import check_code  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_sandbox(), reason="quantlab.engine.sandbox (sandbox) has not landed")
def test_sandbox_violation_then_fix(lab, llm):
    llm.script = [answer(ESCAPE), answer()]
    gen = lab.generate("anything", model=cfg(llm), max_attempts=2)
    assert gen.attempts[0].status == "failed: sandbox"
    assert "os" in gen.attempts[0].checks[-1].detail
    assert "failed the 'sandbox' check" in user_texts(llm.requests[1])[-1]
    assert gen.best is gen.attempts[1]


def test_429_then_success(lab, llm):
    llm.script = [{"status": 429, "retry_after": "0"}, answer()]
    gen = lab.generate("moving-average cross", model=cfg(llm, max_retries=2), max_attempts=1)
    assert gen.best is gen.attempts[0]
    assert len(llm.requests) == 2            # the SDK retried the same request after the 429


def test_hang_times_out_then_next_attempt(lab, llm):
    llm.script = [{"hang": 10}, answer()]
    gen = lab.generate("moving-average cross", model=cfg(llm, timeout=0.5, max_retries=0), max_attempts=2)
    first, second = gen.attempts
    assert first.status == "error" and "did not answer within 0.5 s" in first.error
    assert second.passed


def test_malformed_structured_output_is_retried(lab, llm):
    llm.script = [{"raw_args": "{not json"}, answer()]
    gen = lab.generate("moving-average cross", model=cfg(llm), max_attempts=1)
    assert gen.best is gen.attempts[0]
    assert len(llm.requests) == 2
    assert "Invalid JSON" in json.dumps(llm.requests[1]["body"]["messages"])   # the validation error went back
    assert gen.usage["input_tokens"] == 240                                   # both requests counted


def test_malformed_every_time_is_a_failed_attempt(lab, llm):
    llm.script = [{"raw_args": "{"}] * 3 + [answer()]
    gen = lab.generate("moving-average cross", model=cfg(llm), max_attempts=2)
    assert gen.attempts[0].status == "error" and "not a valid structured answer" in gen.attempts[0].error
    assert gen.best is gen.attempts[1]


def test_budget_stops_the_loop(lab, llm):
    llm.script = [answer(SYNTAX)] * 5
    gen = lab.generate("moving-average cross", model=cfg(llm), max_attempts=5, budget_usd=0.002)
    # each answer costs $0.00088: two attempts spend $0.00176, a third would pass $0.002
    assert gen.stop_reason == "budget" and len(gen.attempts) == 2 and len(llm.requests) == 2
    assert gen.usage["cost_usd"] <= 0.002
    assert "budget" in gen.notes[-1]


def test_bad_key_is_one_clear_error_without_the_key(lab, llm):
    llm.script = [{"status": 401, "error": f"Incorrect API key provided: {KEY}"}]
    with pytest.raises(ModelUnavailable) as info:
        lab.generate("x", model=cfg(llm))
    text = str(info.value)
    assert "refused the API key" in text and "OPENAI_API_KEY" in text and KEY not in text
    assert KEY not in repr(info.value) and "Incorrect API key" not in text


def test_unknown_model(lab, llm):
    llm.script = [{"status": 404, "error": "The model `gpt-nope` does not exist"}]
    with pytest.raises(ModelUnavailable, match="does not know the model 'gpt-nope'"):
        lab.generate("x", model=ModelConfig("openai:gpt-nope", base_url=llm.base_url, api_key=KEY, max_retries=0))


def test_unreachable_endpoint_names_it(lab):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ModelUnavailable, match=f"cannot reach the model endpoint {url}"):
        lab.generate("x", model=ModelConfig("openai:local", base_url=url, max_retries=0, timeout=2))


def test_keys_never_reach_hub_transcript_state_logs_or_reprs(lab, llm, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    llm.script = [answer(SYNTAX), {"status": 500, "error": "boom"}, answer()]
    with caplog.at_level(logging.DEBUG):                     # the SDKs' own debug logs included
        gen = lab.generate("moving-average cross", model=cfg(llm, max_retries=1), max_attempts=2)
    assert caplog.records and KEY not in caplog.text
    assert llm.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"     # the key was really used
    stored = lab.store(gen.best)
    hub = lab.hub.path
    dump = subprocess.run(["git", "-C", str(hub), "log", "-p", "--all", "--format=%B"],
                          capture_output=True, text=True, check=True).stdout
    texts = [dump, json.dumps(gen.to_dict()), repr(gen), gen._repr_html_(), gen.transcript_jsonl(),
             repr(gen.best), gen.best._repr_html_(), json.dumps(lab.state(), default=str),
             lab.state_path.read_text(), repr(cfg(llm)), stored.path.with_suffix(".transcript.jsonl").read_text()]
    for text in texts:
        assert KEY not in text
    assert "Quantlab-Attempts: 2" in dump


def test_missing_extra_gives_one_line(tmp_path):
    code = ("import sys; sys.modules['pydantic_ai'] = None\n"
            "from quantlab.agent.drivers import make_driver\n"
            "from quantlab.agent import ModelConfig, ModelUnavailable\n"
            "try:\n    make_driver(ModelConfig('openai:gpt-4.1', api_key='x'), 'idea', 'sys')\n"
            "except ModelUnavailable as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "model 'openai:gpt-4.1' needs the agent extra: pip install \"quantlab[agent]\""


def test_anthropic_messages_provider(lab, llm):
    llm.script = [answer(SYNTAX), answer()]
    model = ModelConfig("anthropic:claude-sonnet-4-5", base_url=llm.root_url, api_key=KEY, timeout=5, max_retries=0)
    gen = lab.generate("moving-average cross", model=model, max_attempts=2)
    assert [c.status for c in gen.attempts] == ["failed: parses", "passed"]
    first = llm.requests[0]
    assert first["path"] == "/v1/messages"
    assert KEY in (first["headers"].get("x-api-key"), first["headers"].get("authorization", "").removeprefix("Bearer "))
    assert float(first["headers"]["x-stainless-read-timeout"]) == 5.0                 # our timeout reached the SDK
    assert "def signals(data, **params)" in json.dumps(first["body"]["system"])
    assert "failed the 'parses' check" in json.dumps(llm.requests[1]["body"]["messages"])
    assert gen.usage["input_tokens"] == 240 and gen.usage["cost_usd"] > 0


def test_async_twin_on_a_running_loop(lab, llm):
    import asyncio

    llm.script = [answer()]

    async def cell():                     # a notebook cell's own running loop
        return await lab.agenerate("moving-average cross", model=cfg(llm), max_attempts=1)

    gen = asyncio.run(cell())
    assert gen.best is gen.attempts[0]


def test_function_model_in_addition(lab):
    """pydantic-ai's own offline test model, with real model requests disallowed meanwhile."""
    from pydantic_ai import models
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    seen = []

    def author(messages, info: AgentInfo) -> ModelResponse:
        seen.append(messages)
        code = SYNTAX if len(seen) == 1 else GOOD
        tool = info.output_tools[0].name
        return ModelResponse(parts=[ToolCallPart(tool, {"name": "SMA", "code": code, "params": {"fast": 20, "slow": 100},
                                                        "rationale": "r"})])

    previous, models.ALLOW_MODEL_REQUESTS = models.ALLOW_MODEL_REQUESTS, False
    try:
        gen = lab.generate("moving-average cross", model=FunctionModel(author), max_attempts=2)
    finally:
        models.ALLOW_MODEL_REQUESTS = previous
    assert [c.status for c in gen.attempts] == ["failed: parses", "passed"]
    assert "failed the 'parses' check" in str(seen[1][-1])
    assert gen.model.startswith("pydantic-ai:")
