"""The three authors a generation can have: a language model (through pydantic-ai), the offline
building blocks, and a replay of a recorded generation.

Each driver answers :meth:`propose` with a :class:`Proposal` (the structured answer, or the
error that prevented one, and its usage) and appends every message to the transcript.
Built and awaited on the MCP client's loop thread, like every other Lab step.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .models import INSTALL_HINT, OFFLINE_LABEL, AgentError, ModelConfig, ModelUnavailable, scrub
from .offline import OfflineGenerator

__all__ = ["Proposal", "make_driver", "answer_type"]


@dataclass
class Proposal:
    """One answer from the author: ``answer`` (name, code, params, rationale) or ``error``; its usage."""

    answer: dict[str, Any] | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    exhausted: bool = False  # the author has nothing more to propose


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def answer_type() -> Any:
    """The structured answer the model must give (a pydantic model)."""
    from pydantic import BaseModel, Field

    class StrategyAnswer(BaseModel):
        """A trading strategy for quantlab."""

        name: str = Field(description="a short name for the strategy, e.g. 'EMA trend with volatility filter'")
        code: str = Field(description="the complete Python source: imports and `def signals(data, **params)` "
                                      "returning target positions in [-1, 1] aligned to data.index")
        params: dict[str, float | int | bool | str] = Field(
            default_factory=dict, description="default parameter values (keyword arguments of signals)")
        rationale: str = Field(description="two sentences: why this should work, and what changed from the last attempt")

    return StrategyAnswer


class OfflineDriver:
    """Indicator building blocks; never a language model (see :mod:`quantlab.agent.offline`)."""

    label = OFFLINE_LABEL

    def __init__(self, idea: str) -> None:
        self.gen = OfflineGenerator(idea)

    async def propose(self, prompt: str, feedback: str | None, attempt: int) -> Proposal:
        answer = self.gen.next_answer()
        event = {"attempt": attempt, "role": "generator", "time": _now(), "generator": OFFLINE_LABEL}
        if answer is None:
            return Proposal(error="the offline building blocks have no composition left to try", exhausted=True,
                            events=[{**event, "content": "no composition left"}])
        return Proposal(answer=answer, events=[{**event, "content": answer["rationale"], "answer": answer}])

    async def aclose(self) -> None:
        pass


class ReplayDriver:
    """Answers exactly as recorded in a saved generation (``Generation.save``) or a hub transcript (``.jsonl``)."""

    def __init__(self, path: str) -> None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise AgentError(f"replay: no file {p}; give a file written by Generation.save() or a "
                             "generated_bots/*.transcript.jsonl from the hub.")
        text = p.read_text(encoding="utf-8")
        self.answers: list[dict[str, Any] | None] = []
        self.recorded_model = "?"
        if p.suffix == ".jsonl":
            events = [json.loads(line) for line in text.splitlines() if line.strip()]
            for e in events:
                if e.get("role") == "meta":
                    self.recorded_model = e.get("model", "?")
            by_attempt: dict[int, dict[str, Any] | None] = {}
            for e in events:
                if e.get("role") in ("assistant", "generator") and "attempt" in e:
                    by_attempt.setdefault(int(e["attempt"]), None)
                    if e.get("answer"):
                        by_attempt[int(e["attempt"])] = e["answer"]
            self.answers = [by_attempt[k] for k in sorted(by_attempt)]
        else:
            data = json.loads(text)
            self.recorded_model = data.get("model", "?")
            self.answers = [({k: a[k] for k in ("name", "code", "params", "rationale")} if a.get("code") else None)
                            for a in data.get("attempts", [])]
        self.label = f"replay:{p} (recorded from {self.recorded_model}; no network)"
        self._i = 0

    async def propose(self, prompt: str, feedback: str | None, attempt: int) -> Proposal:
        if self._i >= len(self.answers):
            return Proposal(error=f"the recording has only {len(self.answers)} attempt(s)", exhausted=True,
                            events=[{"attempt": attempt, "role": "replay", "time": _now(), "content": "recording exhausted"}])
        answer = self.answers[self._i]
        self._i += 1
        event = {"attempt": attempt, "role": "replay", "time": _now()}
        if answer is None:
            return Proposal(error="the recorded attempt had no usable answer", events=[{**event, "content": "no answer"}])
        return Proposal(answer=dict(answer), events=[{**event, "content": answer.get("rationale", ""), "answer": answer}])

    async def aclose(self) -> None:
        pass


def _messages_to_events(messages: list[Any], attempt: int, secrets: list[str]) -> list[dict[str, Any]]:
    """pydantic-ai messages as plain transcript events (role, content; the answer when it is one)."""
    out = []
    for m in messages:
        kind = getattr(m, "kind", "")
        for part in getattr(m, "parts", []):
            pk = getattr(part, "part_kind", "")
            ev: dict[str, Any] = {"attempt": attempt, "time": str(getattr(part, "timestamp", "") or getattr(m, "timestamp", ""))}
            if kind == "request":
                if pk == "system-prompt":
                    ev.update(role="system", content=part.content)
                elif pk == "user-prompt":
                    ev.update(role="user", content=part.content if isinstance(part.content, str) else str(part.content))
                elif pk in ("tool-return", "retry-prompt"):
                    content = part.model_response() if pk == "retry-prompt" else part.content
                    ev.update(role="user", kind=pk, content=content if isinstance(content, str) else json.dumps(content, default=str))
                else:
                    ev.update(role="user", kind=pk, content=str(getattr(part, "content", "")))
            else:
                if pk == "tool-call":
                    args = part.args if isinstance(part.args, str) else json.dumps(part.args)
                    ev.update(role="assistant", kind="tool-call", tool=part.tool_name, content=args)
                    try:
                        parsed = json.loads(args)
                        if isinstance(parsed, dict) and "code" in parsed:
                            ev["answer"] = parsed
                    except ValueError:
                        pass
                else:
                    ev.update(role="assistant", kind=pk, content=str(getattr(part, "content", "")))
            ev["content"] = scrub(ev.get("content", ""), secrets)
            out.append(ev)
        if kind == "request" and getattr(m, "instructions", None) and attempt == 1 and not any(e.get("role") == "system" for e in out):
            out.insert(0, {"attempt": attempt, "role": "system", "time": "", "content": m.instructions})
    return out


class LLMDriver:
    """A language model through pydantic-ai: one agent run per attempt, the conversation carried over."""

    def __init__(self, config: ModelConfig, instructions: str) -> None:
        try:
            from pydantic_ai import Agent
        except ImportError:
            raise ModelUnavailable(f"model {config.model!r} needs the agent extra: {INSTALL_HINT}") from None
        self.config = config
        self.secrets = config.secrets()
        self.label = config.model + (f" at {config.base_url}" if config.base_url else "")
        self.history: list[Any] | None = None
        self._client: Any = None
        model = self._model()
        self.agent = Agent(model, output_type=answer_type(), instructions=instructions, retries={"output": 2})

    def _model(self) -> Any:
        cfg = self.config
        if cfg.instance is not None:
            return cfg.instance
        try:
            if cfg.provider == "anthropic":
                from anthropic import AsyncAnthropic
                from pydantic_ai.models.anthropic import AnthropicModel
                from pydantic_ai.providers.anthropic import AnthropicProvider

                if not cfg.api_key:
                    raise ModelUnavailable(f"model {cfg.model!r}: no API key; set ANTHROPIC_API_KEY "
                                           "(or api_key_env in [tool.quantlab.llm]).")
                self._client = AsyncAnthropic(api_key=cfg.api_key, base_url=cfg.base_url, timeout=cfg.timeout,
                                              max_retries=cfg.max_retries)
                return AnthropicModel(cfg.name, provider=AnthropicProvider(anthropic_client=self._client))
            from openai import AsyncOpenAI
            from pydantic_ai.models.openai import OpenAIChatModel
            from pydantic_ai.providers.openai import OpenAIProvider
        except ImportError:
            raise ModelUnavailable(f"model {cfg.model!r} needs the agent extra: {INSTALL_HINT}") from None
        if not cfg.api_key and not cfg.base_url:
            raise ModelUnavailable(f"model {cfg.model!r}: no API key; set OPENAI_API_KEY, or OPENAI_BASE_URL / "
                                   "base_url for a local OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio).")
        self._client = AsyncOpenAI(api_key=cfg.api_key or "not-needed", base_url=cfg.base_url, timeout=cfg.timeout,
                                   max_retries=cfg.max_retries)
        return OpenAIChatModel(cfg.name, provider=OpenAIProvider(openai_client=self._client))

    def _where(self) -> str:
        return self.config.base_url or ("api.anthropic.com" if self.config.provider == "anthropic" else "api.openai.com")

    def _cost(self, usage: Any) -> float:
        cfg = self.config
        if cfg.price_input is not None or cfg.price_output is not None:
            return (usage.input_tokens * float(cfg.price_input or 0) + usage.output_tokens * float(cfg.price_output or 0)) / 1e6
        cost = getattr(usage, "cost", None)
        return float(cost) if cost is not None else 0.0

    async def propose(self, prompt: str, feedback: str | None, attempt: int) -> Proposal:
        from pydantic_ai import exceptions as x
        from pydantic_ai.usage import RunUsage

        usage = RunUsage()
        text = prompt if self.history is None else feedback or prompt
        start = time.perf_counter()
        cfg = self.config
        try:
            run = await self.agent.run(text, message_history=self.history, usage=usage)
        except x.ModelAuthenticationError as exc:
            raise ModelUnavailable(scrub(
                f"{self._where()} refused the API key for {cfg.model!r} (HTTP {getattr(exc, 'status_code', 401)}); "
                f"set a valid {'ANTHROPIC_API_KEY' if cfg.provider == 'anthropic' else 'OPENAI_API_KEY'}.", self.secrets)) from None
        except x.ModelNotFoundError:
            raise ModelUnavailable(scrub(f"{self._where()} does not know the model {cfg.name!r}; check the name "
                                         f"(model='{cfg.provider}:NAME').", self.secrets)) from None
        except x.ModelTimeoutError:
            return self._failed(attempt, start, usage, text,
                                f"the model did not answer within {cfg.timeout:g} s (timeout per request, "
                                f"{cfg.max_retries} retries); raise timeout in [tool.quantlab.llm] or ModelConfig(timeout=...)")
        except x.ModelConnectionError as exc:
            raise ModelUnavailable(scrub(f"cannot reach the model endpoint {self._where()} ({type(exc).__name__}); "
                                         "check OPENAI_BASE_URL / base_url and that the server is running.", self.secrets)) from None
        except x.ModelAPIError as exc:
            return self._failed(attempt, start, usage, text, scrub(f"the model endpoint failed: {exc}", self.secrets))
        except x.UnexpectedModelBehavior as exc:
            return self._failed(attempt, start, usage, text,
                                scrub(f"the model's answer was not a valid structured answer (after retries): {exc}", self.secrets))
        seconds = time.perf_counter() - start
        new = run.new_messages()
        self.history = run.all_messages()
        out = run.output
        answer = {"name": out.name, "code": out.code, "params": dict(out.params), "rationale": out.rationale}
        return Proposal(answer=answer, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                        cost_usd=self._cost(usage), seconds=seconds,
                        events=_messages_to_events(new, attempt, self.secrets))

    def _failed(self, attempt: int, start: float, usage: Any, text: str, error: str) -> Proposal:
        return Proposal(error=error, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                        cost_usd=self._cost(usage), seconds=time.perf_counter() - start,
                        events=[{"attempt": attempt, "role": "user", "time": _now(), "content": scrub(text, self.secrets)},
                                {"attempt": attempt, "role": "error", "time": _now(), "content": error}])

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def make_driver(config: ModelConfig, idea: str, instructions: str) -> Any:
    """The driver for ``config`` (offline, replay or a language model)."""
    if config.provider == "offline":
        return OfflineDriver(idea)
    if config.provider == "replay":
        return ReplayDriver(config.model.partition(":")[2])
    return LLMDriver(config, instructions)
