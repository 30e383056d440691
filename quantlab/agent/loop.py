"""The generation loop: prompt -> structured answer -> checks (cheapest first) -> feedback -> next attempt.

Runs as one coroutine on the MCP client's loop thread (``Lab.generate`` / ``Lab.agenerate``).
The checks, in order: the code parses; it defines ``signals``; it passes the sandbox's static
check; it runs on 500 synthetic bars (in the sandbox); it is causal (the look-ahead check); the
full backtest through the backtest MCP server; the deployment policy. The first failure goes
back to the model verbatim and the next attempt starts. The loop stops at the first candidate
that passes, at ``max_attempts``, or before the budget would be exceeded.
"""
from __future__ import annotations

import ast
import asyncio
import functools
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping

import pandas as pd

from quantlab._util import to_jsonable
from quantlab.client import ClientError
from quantlab.engine import sandbox
from quantlab.engine.lookahead import check_lookahead
from quantlab.engine.strategy import StrategyError

from .drivers import make_driver
from .generation import Candidate, Check, Generation
from .models import ModelConfig, resolve_model, scrub

if TYPE_CHECKING:
    from quantlab.lab.lab import Lab
    from quantlab.lab.policy import DeploymentPolicy

__all__ = ["run_generation", "build_instructions", "describe_data"]

SMOKE_BARS = 500
SMOKE_REF = f"synthetic:seed=11,bars={SMOKE_BARS}"
LOOKAHEAD_CUTS = (0.15, 0.4, 0.7)
_COST_KEYS = ("cash", "fees", "slippage", "periods_per_year", "fill")

CONTRACT = """\
Write a trading strategy for quantlab as Python source code that defines one function:

    def signals(data, **params) -> pandas.Series

`data` is a pandas DataFrame indexed by bar time with float columns open, high, low, close, volume.
Return the target position for every bar, aligned to data.index: a number in [-1, 1]
(1 = fully long, -1 = fully short, 0 = flat). Keyword parameters with defaults are the tunable
parameters; give their defaults in `params` too.
The strategy must be causal: the value at bar t may use only data up to and including bar t
(no shift(-1), no centred windows, no statistics of the whole series). It is checked by
recomputing it on truncated data.
Import only what the sandbox allows ({allowed}); no files, network, subprocesses, eval or exec.
Answer with the structured result: name, code (the complete module), params, rationale."""


def _allowed_text() -> str:
    try:
        from quantlab.engine import sandbox  # type: ignore[attr-defined]
    except ImportError:
        return "numpy, pandas, math"
    for attr in ("allowed_modules", "DEFAULT_ALLOW"):
        value = getattr(sandbox, attr, None)
        if callable(value):
            try:
                value = value()
            except Exception:  # noqa: BLE001
                value = None
        if value:
            return ", ".join(sorted(map(str, value)))
    return "numpy, pandas, math"


def build_instructions(policy: "DeploymentPolicy") -> str:
    """The system instructions: the contract, the sandbox and the policy rules."""
    rules = "; ".join(f"{m} {r} {t:g}" for m, r, t in policy.rules()) or "none"
    return CONTRACT.format(allowed=_allowed_text()) + f"\nThe backtest must pass the deployment policy: {rules}."


def describe_data(frame: pd.DataFrame | None, ref: str, costs: Mapping[str, Any]) -> str:
    """Columns, bars, period and bar size of the data, and the trading costs, in a few lines."""
    lines = [f"Data: {ref}"]
    if frame is not None and len(frame):
        step = pd.Series(frame.index).diff().median() if len(frame) > 1 else None
        lines.append(f"  columns: {', '.join(map(str, frame.columns))}; {len(frame)} bars"
                     + (f" of {step}" if step is not None else "")
                     + f", from {frame.index[0]} to {frame.index[-1]}")
    from quantlab.engine.costs import default_costs

    c = {**default_costs(), **{k: costs[k] for k in ("cash", "fees", "slippage") if costs.get(k) is not None}}
    lines.append("  costs: " + ", ".join(f"{k}={v:g}" for k, v in c.items()))
    return "\n".join(lines)


def _feedback(c: Candidate) -> str:
    failed = next((ch for ch in c.checks if ch.status == "fail"), None)
    if failed is None:
        return f"Attempt {c.attempt} gave no usable answer: {c.error}. Answer again with the structured result."
    return (f"Attempt {c.attempt} ({c.name!r}) failed the '{failed.name}' check:\n{failed.detail}\n"
            "Fix exactly this and answer again with the complete code.")


def _signals_def(tree: ast.Module) -> ast.FunctionDef | None:
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "signals"]
    return defs[-1] if defs else None


class _Checker:
    """Runs the checks of one candidate, cheapest first, stopping at the first failure."""

    def __init__(self, lab: "Lab", data: Any, frame: pd.DataFrame | None, policy: "DeploymentPolicy",
                 params: Mapping[str, Any] | None, costs: Mapping[str, Any]) -> None:
        self.lab, self.data, self.frame, self.policy = lab, data, frame, policy
        self.params = dict(params or {})
        self.costs = dict(costs)
        self._smoke: pd.DataFrame | None = None

    def smoke_data(self) -> pd.DataFrame:
        if self._smoke is None:
            from quantlab.engine.data import from_reference

            self._smoke = from_reference(SMOKE_REF)
        return self._smoke

    async def run(self, c: Candidate) -> None:
        for step in (self._parses, self._defines, self._sandbox, self._smoke_run, self._causal, self._backtest, self._policy):
            start = time.perf_counter()
            name, status, detail = await step(c)
            c.checks.append(Check(name, status, detail, time.perf_counter() - start))
            if status == "fail":
                return

    async def _parses(self, c: Candidate) -> tuple[str, str, str]:
        try:
            ast.parse(c.code)
        except SyntaxError as exc:
            text = f"\n    {exc.text.rstrip()}" if exc.text else ""
            return "parses", "fail", f"SyntaxError on line {exc.lineno}: {exc.msg}{text}"
        return "parses", "pass", ""

    async def _defines(self, c: Candidate) -> tuple[str, str, str]:
        fn = _signals_def(ast.parse(c.code))
        if fn is None:
            return "defines signals", "fail", "no top-level `def signals(data, **params)` in the code"
        args = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        if not args:
            return "defines signals", "fail", f"line {fn.lineno}: `signals` must take the data frame as its first argument"
        known = set(args[1:]) | {a.arg for a in fn.args.kwonlyargs}
        unknown = [k for k in {**c.params, **self.params} if k not in known]
        if unknown and fn.args.kwarg is None:
            return "defines signals", "fail", (f"line {fn.lineno}: params {unknown} are not parameters of signals "
                                               f"(it accepts {sorted(known) or 'none'})")
        return "defines signals", "pass", f"signals({', '.join(args)})"

    async def _sandbox(self, c: Candidate) -> tuple[str, str, str]:
        try:
            await asyncio.to_thread(sandbox.check_code, c.code)
        except Exception as exc:  # noqa: BLE001 - SandboxError names the line
            return "sandbox", "fail", f"{type(exc).__name__}: {exc}"
        return "sandbox", "pass", ""

    async def _smoke_run(self, c: Candidate) -> tuple[str, str, str]:
        try:
            # the generated code never runs in this process: its parameters are read in the sandbox
            c.strategy = await asyncio.to_thread(sandbox.load, c.code, c.name or "generated")
            params = c.strategy.resolve_params({**c.params, **self.params})
        except Exception as exc:  # noqa: BLE001 - StrategyError, SandboxError: the reason goes back to the model
            return "runs on 500 bars", "fail", f"{type(exc).__name__}: {exc}"
        c.params = params
        try:
            out = await asyncio.to_thread(sandbox.run_signals, c.strategy, self.smoke_data(), params)
        except Exception as exc:  # noqa: BLE001 - SandboxError / SignalError with the line
            return "runs on 500 bars", "fail", f"{type(exc).__name__}: {exc}"
        return "runs on 500 bars", "pass", f"{len(out)} targets in the sandbox"

    async def _causal(self, c: Candidate) -> tuple[str, str, str]:
        # three prefixes catch shift(-k), centred windows and whole-series statistics alike; each one is a
        # sandboxed run, so fewer cuts keep an attempt cheap
        check = functools.partial(check_lookahead, c.strategy, self.smoke_data(), c.params, cuts=LOOKAHEAD_CUTS,
                                  sandbox=True)
        try:
            report = await asyncio.to_thread(check)
        except Exception as exc:  # noqa: BLE001 - the strategy's own error during the check
            return "causal", "fail", f"the look-ahead check could not run the strategy: {type(exc).__name__}: {exc}"
        if report.causal:
            return "causal", "pass", ""
        return "causal", "fail", f"{report.message} Use only data up to each bar."

    async def _backtest(self, c: Candidate) -> tuple[str, str, str]:
        try:
            summary = await self.lab.arun_summary(c.strategy, self.data, c.params, **self.costs)
        except (ClientError, StrategyError, ValueError) as exc:
            return "backtest", "fail", str(exc)
        c.record_run(summary, self.lab)
        m = c.metrics
        return "backtest", "pass", f"sharpe {m.get('sharpe', float('nan')):.2f}, {m.get('trades')} trades"

    async def _policy(self, c: Candidate) -> tuple[str, str, str]:
        check = self.policy.check(c.metrics)
        if check.passed:
            return "policy", "pass", ""
        return "policy", "fail", "; ".join(check.failures)


async def _load_frame(data: Any) -> pd.DataFrame | None:
    if isinstance(data, pd.DataFrame):
        return data
    from quantlab.engine.data import from_reference

    try:
        return await asyncio.to_thread(from_reference, str(data))
    except Exception:  # noqa: BLE001 - a server-side file: the server still knows it
        return None


async def run_generation(
    lab: "Lab",
    idea: str,
    data: Any = "sample",
    *,
    model: "str | ModelConfig | None" = None,
    max_attempts: int = 5,
    policy: "DeploymentPolicy | None" = None,
    budget_usd: float | None = None,
    params: Mapping[str, Any] | None = None,
    on_attempt: Callable[[str, Candidate, Generation], None] | None = None,
    **costs: Any,
) -> Generation:
    """The loop (see the module doc); ``on_attempt(event, candidate, generation)`` is called with
    ``"start"``, ``"answer"``, ``"check"`` and ``"done"`` for live views."""
    if not isinstance(idea, str) or not idea.strip():
        raise ValueError("generate needs an idea, e.g. lab.generate('trend following with a volatility filter').")
    if int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}.")
    unknown = [k for k in costs if k not in _COST_KEYS]
    if unknown:
        raise TypeError(f"generate got unexpected keyword(s) {unknown}; backtest costs are {list(_COST_KEYS)}.")
    config = resolve_model(model)
    policy = policy or lab.policy
    instructions = build_instructions(policy)
    frame = await _load_frame(data)
    ref = data if isinstance(data, str) else "DataFrame"
    prompt = f"Idea: {idea.strip()}\n\n{describe_data(frame, ref, costs)}"
    if params:
        prompt += f"\nUse these parameter values: {dict(params)}"
    driver = make_driver(config, idea, instructions)
    secrets = config.secrets()
    gen = Generation(idea=idea, model=driver.label, data=ref, policy=policy,
                     created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if config.provider == "offline":
        gen.notes.append(config.label)
    gen.transcript.append({"role": "meta", "model": driver.label, "idea": idea, "data": ref,
                           "policy": repr(policy), "time": gen.created_at})
    if config.provider not in ("offline", "replay"):
        gen.transcript.append({"attempt": 1, "role": "system", "content": instructions})
    checker = _Checker(lab, data, frame, policy, params, costs)

    def emit(event: str, c: Candidate) -> None:
        if on_attempt is not None:
            try:
                on_attempt(event, c, gen)
            except Exception:  # noqa: BLE001 - a broken view must not stop the loop
                pass

    feedback: str | None = None
    gen.stop_reason = "max_attempts"
    try:
        for n in range(1, int(max_attempts) + 1):
            if budget_usd is not None:
                spent = gen.usage["cost_usd"]
                estimate = max((c.cost_usd for c in gen.attempts), default=0.0)
                if spent + estimate > float(budget_usd) or (n == 1 and float(budget_usd) <= 0):
                    gen.stop_reason = "budget"
                    gen.notes.append(f"stopped before attempt {n}: ${spent:.4f} spent, the next attempt would cost "
                                     f"about ${estimate:.4f} and the budget is ${float(budget_usd):.4f}")
                    break
            c = Candidate(attempt=n, generation=gen)
            gen.attempts.append(c)
            emit("start", c)
            t0 = time.perf_counter()
            proposal = await driver.propose(prompt, feedback, n)
            gen.transcript.extend({**e, "content": scrub(e.get("content", ""), secrets)} for e in proposal.events)
            c.input_tokens, c.output_tokens = proposal.input_tokens, proposal.output_tokens
            c.cost_usd, c.model_seconds = proposal.cost_usd, proposal.seconds
            if proposal.answer is None:
                c.error = scrub(proposal.error or "no answer", secrets)
                c.seconds = time.perf_counter() - t0
                if proposal.exhausted:
                    gen.attempts.pop()
                    gen.stop_reason = "exhausted"
                    gen.notes.append(c.error)
                    break
                feedback = _feedback(c)
                emit("done", c)
                continue
            a = proposal.answer
            c.name, c.code = str(a.get("name") or "generated").strip(), str(a.get("code") or "")
            c.params, c.rationale = dict(a.get("params") or {}), str(a.get("rationale") or "")
            emit("answer", c)
            await checker.run(c)
            c.seconds = time.perf_counter() - t0
            gen.transcript.append({"attempt": n, "role": "check", "status": c.status,
                                   "checks": [ch.to_dict() for ch in c.checks],
                                   "metrics": to_jsonable(c.metrics)})
            emit("done", c)
            if c.passed:
                gen.stop_reason = "passed"
                break
            feedback = _feedback(c)
    finally:
        await driver.aclose()
    await _record_trials(lab, gen)
    return gen


async def _record_trials(lab: "Lab", gen: Generation) -> None:
    """Every attempt is a trial (deflated Sharpe): tell the hub when it can count them."""
    record = getattr(lab.hub, "record_trials", None)
    tried = [c for c in gen.attempts if c.code]
    if record is None or not tried:
        return
    name = (gen.best or tried[-1]).name
    try:
        await asyncio.to_thread(record, name, len(tried))
    except Exception as exc:  # noqa: BLE001 - counting trials must not lose the generation
        gen.notes.append(f"could not record {len(tried)} trials for {name!r}: {exc}")
