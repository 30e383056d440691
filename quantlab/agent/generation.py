"""What a generation produced: every :class:`Candidate` the model proposed, and the best one.

>>> c = Candidate(attempt=1, name="x", code="def signals(data):\\n    return data.close * 0\\n")
>>> c.status
'pending'
"""
from __future__ import annotations

import difflib
import hashlib
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from quantlab._util import html as qh
from quantlab._util import decode_number, to_jsonable

if TYPE_CHECKING:
    from quantlab.engine.backtest import BacktestResult
    from quantlab.engine.strategy import Strategy

__all__ = ["Check", "Candidate", "Generation", "CHECKS"]

# the checks, cheapest first (Candidate.checks follows this order)
CHECKS = ("parses", "defines signals", "sandbox", "runs on 500 bars", "causal", "backtest", "policy")
_KEY_METRICS = ("sharpe", "max_drawdown", "profit_factor", "trades", "total_return")


@dataclass
class Check:
    """One check of one candidate: ``name``, ``status`` (``pass``/``fail``/``skip``), ``detail``, ``seconds``."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "seconds": round(self.seconds, 4)}

    def __repr__(self) -> str:
        return f"Check({self.name!r}, {self.status}{', ' + self.detail[:60] if self.detail else ''})"


@dataclass
class Candidate:
    """One attempt: the model's answer (``name``, ``code``, ``params``, ``rationale``), its ``checks``,
    the backtest ``result`` and ``metrics`` (when it got that far), the ``error`` that stopped it,
    and what it cost (``input_tokens``, ``output_tokens``, ``cost_usd``, ``seconds``).

    ``lab.store(candidate)`` and ``lab.store_and_deploy(candidate)`` work as on a hand-written
    result; the hub then also keeps the generation's transcript.
    """

    attempt: int
    name: str = ""
    code: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    rationale: str = ""
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    model_seconds: float = 0.0
    strategy: "Strategy | None" = field(default=None, repr=False)
    run_id: str | None = None
    bars: int = 0
    generation: "Generation | None" = field(default=None, repr=False, compare=False)
    _metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    _result: "BacktestResult | None" = field(default=None, repr=False, compare=False)
    _lab: Any = field(default=None, repr=False, compare=False)

    @property
    def result(self) -> "BacktestResult | None":
        """The full ``BacktestResult`` (equity, trades, ...), fetched from the backtest server on first use;
        ``None`` when the candidate never reached the backtest. (The loop itself needs only the metrics.)"""
        if self._result is None and self.run_id and self._lab is not None:
            self._attach(self._lab.load_run(self.run_id, self.bars, self.strategy))
        return self._result

    async def aresult(self) -> "BacktestResult | None":
        """:attr:`result`, awaited on the MCP loop (``await cand.aresult()`` inside Lab steps)."""
        if self._result is None and self.run_id and self._lab is not None:
            self._attach(await self._lab.aload_run(self.run_id, self.bars, self.strategy))
        return self._result

    def record_run(self, summary: Mapping[str, Any], lab: Any) -> None:
        """Keep the backtest server's summary of this candidate's run (``lab.run_summary``): its id,
        length and metrics; :attr:`result` fetches the whole run from ``lab`` on first use."""
        self.run_id, self.bars, self._lab = summary["run_id"], int(summary.get("bars", 0)), lab
        self._metrics = {k: decode_number(v) for k, v in (summary.get("metrics") or {}).items()}

    def _attach(self, result: "BacktestResult") -> None:
        result.generated_by = self  # so lab.store(gen.best.result) keeps the transcript too
        self._result = result

    @property
    def passed(self) -> bool:
        """``True`` when every check passed (including the policy)."""
        return self.error is None and bool(self.checks) and all(c.passed for c in self.checks) and \
            any(c.name == "policy" and c.status == "pass" for c in self.checks)

    @property
    def status(self) -> str:
        """``passed``, ``failed: <check>``, ``error`` (no usable answer) or ``pending``."""
        if self.passed:
            return "passed"
        failed = next((c for c in self.checks if c.status == "fail"), None)
        if failed is not None:
            return f"failed: {failed.name}"
        return "error" if self.error else "pending"

    @property
    def metrics(self) -> dict[str, Any]:
        """The backtest metrics (empty when the candidate never reached the backtest)."""
        return dict(self._result.metrics) if self._result is not None else dict(self._metrics)

    @property
    def overhead_seconds(self) -> float:
        """quantlab's own time for this attempt (checks and backtest, not the model)."""
        return sum(c.seconds for c in self.checks)

    def answer(self) -> dict[str, Any]:
        """The structured answer as the model gave it."""
        return {"name": self.name, "code": self.code, "params": dict(self.params), "rationale": self.rationale}

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt, "status": self.status, **self.answer(),
            "checks": [c.to_dict() for c in self.checks], "error": self.error,
            "metrics": to_jsonable(self.metrics),
            "run_id": self.run_id,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd, "seconds": round(self.seconds, 4), "model_seconds": round(self.model_seconds, 4),
        }

    def __repr__(self) -> str:
        m = self.metrics
        metric = f", sharpe={m['sharpe']:.2f}" if isinstance(m.get("sharpe"), float) and math.isfinite(m["sharpe"]) else ""
        return f"Candidate(attempt={self.attempt}, name={self.name!r}, {self.status}{metric}, params={self.params!r})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(c.name)}</td><td>{_badge(c.status)}</td>"
                       f"<td style='text-align:left'><pre style='margin:0;white-space:pre-wrap'>{html.escape(c.detail)}</pre></td></tr>"
                       for c in self.checks)
        return (f"<div><b>Candidate {self.attempt}</b> <code>{html.escape(self.name)}</code> — {html.escape(self.status)}"
                f"<br><small>{html.escape(self.rationale)}</small><table>{rows}</table>"
                f"<details><summary>code</summary><pre>{html.escape(self.code)}</pre></details></div>")


def _badge(status: str) -> str:
    colour = {"pass": qh.GREEN, "fail": qh.RED, "skip": qh.GREY}.get(status, qh.AMBER)
    return qh.coloured(status, colour, bold=True)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if math.isfinite(x) else str(x)
    return html.escape(str(x)) if x is not None else "—"


@dataclass
class Generation:
    """The outcome of ``lab.generate(idea)``.

    ``best`` is the first candidate that passed every check (else ``None``), ``attempts`` every
    candidate in order, ``usage`` the tokens and cost, ``model`` what wrote the code (the offline
    generator says so), ``transcript`` every message exchanged (JSON-safe dicts), ``stop_reason``
    why the loop ended (``passed``, ``max_attempts``, ``budget``, ``exhausted``).
    ``quantlab.review(gen)`` compares the attempts; :meth:`save` writes a file that
    ``model="replay:PATH"`` replays without a network.
    """

    idea: str
    model: str
    data: str
    attempts: list[Candidate] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "pending"
    policy: Any = field(default=None, repr=False)
    created_at: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> Candidate | None:
        """The candidate that passed every check, or ``None``."""
        return next((c for c in self.attempts if c.passed), None)

    @property
    def usage(self) -> dict[str, Any]:
        """``{"input_tokens", "output_tokens", "cost_usd", "requests"}`` over every attempt."""
        return {
            "input_tokens": sum(c.input_tokens for c in self.attempts),
            "output_tokens": sum(c.output_tokens for c in self.attempts),
            "cost_usd": round(sum(c.cost_usd for c in self.attempts), 8),
            "attempts": len(self.attempts),
        }

    def transcript_jsonl(self) -> str:
        """The transcript as JSON lines (what the hub stores beside the strategy)."""
        return "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in self.transcript)

    @property
    def transcript_sha256(self) -> str:
        return hashlib.sha256(self.transcript_jsonl().encode("utf-8")).hexdigest()

    def diffs(self) -> list[str]:
        """Unified diffs of the code between consecutive attempts (``""`` for the first)."""
        out = [""]
        for a, b in zip(self.attempts, self.attempts[1:]):
            out.append("".join(difflib.unified_diff(a.code.splitlines(True), b.code.splitlines(True),
                                                    f"attempt {a.attempt}", f"attempt {b.attempt}", n=2)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: idea, model, data, stop reason, usage, every attempt and the transcript."""
        best = self.best
        return {
            "idea": self.idea, "model": self.model, "data": self.data, "stop_reason": self.stop_reason,
            "created_at": self.created_at, "best": best.attempt if best else None, "usage": self.usage,
            "notes": list(self.notes), "attempts": [c.to_dict() for c in self.attempts], "transcript": list(self.transcript),
        }

    def to_frame(self):
        """One row per attempt: attempt, name, status, key metrics, tokens, cost, seconds."""
        import pandas as pd

        rows = []
        for c in self.attempts:
            m = c.metrics
            rows.append({"attempt": c.attempt, "name": c.name, "status": c.status,
                         **{k: m.get(k) for k in _KEY_METRICS}, "tokens": c.input_tokens + c.output_tokens,
                         "cost_usd": c.cost_usd, "seconds": round(c.seconds, 3)})
        return pd.DataFrame(rows, columns=["attempt", "name", "status", *_KEY_METRICS, "tokens", "cost_usd", "seconds"])

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON; ``lab.generate(idea, model=f"replay:{path}")`` replays it."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        return p

    def __repr__(self) -> str:
        best = self.best
        head = (f"Generation({self.idea[:40]!r}, model={self.model!r}, {len(self.attempts)} attempt(s), "
                f"stop={self.stop_reason!r}, best={'attempt ' + str(best.attempt) if best else None}, "
                f"cost=${self.usage['cost_usd']:.4f})")
        lines = [f"  {c.attempt}. {c.status:<24} {c.name[:40]}" for c in self.attempts]
        return "\n".join([head, *lines])

    def _repr_html_(self) -> str:
        best = self.best
        diffs = self.diffs()
        head = (f"<b>Generation</b> <code>{html.escape(self.idea[:80])}</code><br>"
                f"<small>{html.escape(self.model)} · {len(self.attempts)} attempt(s) · stop: {html.escape(self.stop_reason)} · "
                f"tokens {self.usage['input_tokens']}+{self.usage['output_tokens']} · ${self.usage['cost_usd']:.4f}</small>")
        body = []
        for c, diff in zip(self.attempts, diffs):
            m = c.metrics
            checks = " ".join(f"<span title='{html.escape(ch.detail)}'>{html.escape(ch.name)}:{_badge(ch.status)}</span>"
                              for ch in c.checks)
            failed = next((ch for ch in c.checks if ch.status == "fail"), None)
            reason = failed.detail if failed else (c.error or "")
            star = " ★" if best is c else ""
            diff_html = (f"<details><summary>diff from attempt {c.attempt - 1}</summary>"
                         f"<pre>{html.escape(diff)}</pre></details>") if diff else ""
            body.append(
                f"<tr><td>{c.attempt}{star}</td><td style='text-align:left'><code>{html.escape(c.name)}</code></td>"
                f"<td style='text-align:left'>{html.escape(c.status)}<br><small>{checks}</small></td>"
                f"<td>{_fmt(m.get('sharpe'))}</td><td>{_fmt(m.get('max_drawdown'))}</td><td>{_fmt(m.get('trades'))}</td>"
                f"<td>{c.input_tokens + c.output_tokens}</td><td>${c.cost_usd:.4f}</td><td>{c.seconds:.2f}s</td>"
                f"<td style='text-align:left'><small>{html.escape(reason[:300])}</small>{diff_html}</td></tr>")
        table = ("<table><tr><th>#</th><th>name</th><th>status / checks</th><th>sharpe</th><th>max dd</th><th>trades</th>"
                 "<th>tokens</th><th>cost</th><th>time</th><th>failure / diff</th></tr>" + "".join(body) + "</table>")
        return f"<div>{head}{table}</div>"
