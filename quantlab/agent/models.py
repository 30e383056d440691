"""Which model writes the strategy, and how quantlab talks to it.

A model is named by one string:

* ``"openai:gpt-4.1"`` - OpenAI, or any OpenAI-compatible endpoint when a ``base_url`` is set
  (Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter);
* ``"anthropic:claude-sonnet-4-5"`` - Anthropic's messages API;
* ``"offline"`` - no model at all: indicator building blocks (:mod:`quantlab.agent.offline`);
* ``"replay:PATH"`` - the answers recorded in a saved generation or transcript, no network;
* a pydantic-ai ``Model`` object (e.g. ``FunctionModel`` in tests) - used as it is.

:func:`resolve_model` finds the model and its settings, first match wins: the arguments,
``quantlab.toml`` ``[llm]`` or ``pyproject.toml`` ``[tool.quantlab.llm]`` in the current
directory, then the environment (``QUANTLAB_MODEL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY``). With nothing configured the model is ``"offline"``. API keys are read
from the environment (or ``api_key_env = "NAME"`` in the file) and never printed: the
:class:`ModelConfig` repr hides them and every error passes through :func:`scrub`.

The provider layer is ``pydantic-ai-slim[openai,anthropic]`` (``pip install "quantlab[agent]"``),
imported only when a real model is used.

>>> resolve_model("offline").provider
'offline'
>>> cfg = ModelConfig("openai:gpt-4.1", api_key="sk-not-shown")
>>> "sk-not-shown" in repr(cfg)
False
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ModelConfig", "resolve_model", "scrub", "AgentError", "ModelUnavailable", "INSTALL_HINT", "OFFLINE_LABEL"]

INSTALL_HINT = 'pip install "quantlab[agent]"'
OFFLINE_LABEL = "offline \u2014 indicator building blocks, no LLM"
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class AgentError(RuntimeError):
    """The agent could not do what was asked; the message says what to set or change."""


class ModelUnavailable(AgentError):
    """The model cannot be used at all (bad key, unknown model, unreachable endpoint, extra missing)."""


@dataclass(frozen=True)
class ModelConfig:
    """A model and how to reach it.

    ``model`` is ``"provider:name"``, ``"offline"`` or ``"replay:PATH"``; ``base_url`` an
    OpenAI-compatible endpoint; ``timeout`` seconds per request; ``max_retries`` retries of a
    request on 429/5xx/timeouts (with backoff, honouring ``retry-after``); ``price_input`` /
    ``price_output`` USD per million tokens when the price list does not know the model.
    The API key is never shown.

    >>> ModelConfig("openai:llama3", base_url="http://127.0.0.1:11434/v1").provider
    'openai'
    """

    model: str = "offline"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 3
    price_input: float | None = None
    price_output: float | None = None
    source: str = "arguments"
    instance: Any = field(default=None, repr=False, compare=False)  # a pydantic-ai Model object, used as is

    @property
    def provider(self) -> str:
        """``openai``, ``anthropic``, ``offline`` or ``replay``."""
        if self.model == "offline":
            return "offline"
        head, sep, _ = self.model.partition(":")
        if not sep:
            return "openai"
        return head

    @property
    def name(self) -> str:
        """The model name without the provider (``gpt-4.1``)."""
        return self.model.partition(":")[2] if ":" in self.model else self.model

    @property
    def label(self) -> str:
        """What every result says about the model."""
        if self.provider == "offline":
            return f"model: {OFFLINE_LABEL}"
        where = f" at {self.base_url}" if self.base_url else ""
        return f"model: {self.model}{where}"

    def secrets(self) -> list[str]:
        """Values that must never appear in output (the key, and every provider key in the environment)."""
        values = [self.api_key] + [os.environ.get(v) for v in _KEY_ENV.values()]
        return [v for v in values if v and len(v) >= 4]


def scrub(text: Any, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with every secret value (and any provider key in the environment) replaced by ``***``.

    >>> scrub("bad key sk-abc123", ["sk-abc123"])
    'bad key ***'
    """
    out = str(text)
    for value in list(secrets) + [os.environ.get(v) for v in _KEY_ENV.values()]:
        if value and len(value) >= 4:
            out = out.replace(value, "***")
    return out


def _file_settings(directory: Path | None = None) -> tuple[dict[str, Any], str | None]:
    d = Path.cwd() if directory is None else Path(directory)
    q = d / "quantlab.toml"
    if q.is_file():
        data = tomllib.loads(q.read_text(encoding="utf-8"))
        llm = data.get("llm") or (data.get("tool", {}).get("quantlab", {}).get("llm"))
        if isinstance(llm, Mapping):
            return dict(llm), str(q)
    p = d / "pyproject.toml"
    if p.is_file():
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            return {}, None
        llm = data.get("tool", {}).get("quantlab", {}).get("llm")
        if isinstance(llm, Mapping):
            return dict(llm), f"{p} [tool.quantlab.llm]"
    return {}, None


def resolve_model(model: "str | ModelConfig | None" = None, *, directory: str | os.PathLike[str] | None = None,
                  **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` to use: ``model`` (a string or a config), else the config file, else the environment.

    ``overrides`` (``base_url``, ``api_key``, ``timeout``, ``max_retries``, ``price_input``,
    ``price_output``) win over everything.

    >>> resolve_model("anthropic:claude-sonnet-4-5").provider
    'anthropic'
    """
    if isinstance(model, ModelConfig):
        return replace(model, **{k: v for k, v in overrides.items() if v is not None})
    if model is not None and not isinstance(model, str):  # any pydantic-ai Model (FunctionModel, TestModel, ...)
        name = getattr(model, "model_name", None) or type(model).__name__
        return ModelConfig(model=f"pydantic-ai:{name}", instance=model, source="arguments")
    settings, where = _file_settings(Path(directory) if directory is not None else None)
    source = "arguments"
    if model is None:
        if settings.get("model"):
            model, source = str(settings["model"]), where or "config file"
        elif os.environ.get("QUANTLAB_MODEL"):
            model, source = os.environ["QUANTLAB_MODEL"], "QUANTLAB_MODEL"
        else:
            model, source = "offline", "default (no model configured)"
    model = str(model).strip()
    if model.startswith("replay:") or model == "offline":
        return ModelConfig(model=model, source=source)
    provider = model.partition(":")[0] if ":" in model else "openai"
    if provider not in _KEY_ENV:
        raise ModelUnavailable(
            f"unknown model provider {provider!r} in {model!r}; use 'openai:NAME' (also any OpenAI-compatible "
            "endpoint with base_url), 'anthropic:NAME', 'offline' or 'replay:PATH'."
        )
    if ":" not in model:
        model = f"openai:{model}"
    key_env = str(settings.get("api_key_env") or _KEY_ENV[provider])
    base_url = settings.get("base_url") or (os.environ.get("OPENAI_BASE_URL") if provider == "openai" else
                                            os.environ.get("ANTHROPIC_BASE_URL"))
    cfg = ModelConfig(
        model=model,
        base_url=base_url or None,
        api_key=os.environ.get(key_env) or None,
        timeout=float(settings.get("timeout", 60.0)),
        max_retries=int(settings.get("max_retries", 3)),
        price_input=settings.get("price_input"),
        price_output=settings.get("price_output"),
        source=source,
    )
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
