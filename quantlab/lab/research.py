"""The Lab's research steps: backtest, sweep, validate (look-ahead, policy) and generate, each one
coroutine on the MCP loop with a sync and an async face (:mod:`quantlab.lab._twins`).

:class:`ResearchSteps` is a mixin of :class:`quantlab.Lab` (it uses the lab's ``_call``, ``hub``,
``policy`` and upload caches); use the lab, not this class.
"""
from __future__ import annotations

import asyncio
import base64
import io
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from quantlab.engine.costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE
from quantlab.engine.strategy import Strategy

from ._twins import _counted, _twins
from .policy import DeploymentPolicy, PolicyCheck

if TYPE_CHECKING:  # pandas and the engine load in the steps that use them
    from quantlab.engine.backtest import BacktestResult
    from quantlab.engine.sweep import SweepResult

__all__ = ["ResearchSteps"]


class ResearchSteps:
    """Backtest, sweep, validate and generate (a mixin of :class:`quantlab.Lab`)."""

    async def _data_ref(self, data: Any) -> tuple[str, str | None]:
        """A data reference the backtest server understands; uploads a DataFrame once.

        A local ``.csv``/``.parquet`` path is loaded here (readable errors from
        :func:`quantlab.engine.data.load`) and uploaded by content hash like a DataFrame."""
        import pandas as pd

        from quantlab.engine.data import content_hash, is_local_path
        from quantlab.engine.data import load as load_bars

        if is_local_path(data):
            data = await asyncio.to_thread(load_bars, data)
        if isinstance(data, str):
            return data, data
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame or a reference string such as 'sample', not {type(data).__name__}.")
        key = await asyncio.to_thread(content_hash, data)
        if key not in self._uploads:
            buf = io.BytesIO()
            await asyncio.to_thread(data.to_parquet, buf)
            answer = await self._call(self.backtest_server, "upload_data",
                                      {"data": base64.b64encode(buf.getvalue()).decode("ascii"), "format": "parquet-base64"},
                                      timeout=120.0)
            self._uploads[key] = answer["data"]
        self._frames[self._uploads[key]] = data
        return self._uploads[key], None

    @staticmethod
    def _strategy(strategy: Strategy | str, name: str | None = None) -> Strategy:
        return Strategy.coerce(strategy, name)

    # ----------------------------------------------------------------------- backtest
    async def _backtest(
        self,
        strategy: Strategy | str,
        data: Any = "sample",
        params: Mapping[str, Any] | None = None,
        *,
        cash: float = DEFAULT_CASH,
        fees: float = DEFAULT_FEES,
        slippage: float = DEFAULT_SLIPPAGE,
        periods_per_year: float | None = None,
        fill: str = "next_open",
        holdout: float | None = None,
        timeout: float = 120.0,
    ) -> BacktestResult:
        """Backtest ``strategy`` on ``data`` through the backtest server; return the full :class:`BacktestResult`.

        ``data`` is a DataFrame or a local ``"bars.csv"``/``"bars.parquet"`` path (uploaded once,
        cached by content hash) or a reference: ``"sample"``, ``"synthetic:seed=7,bars=100000"``,
        ``"file:<path under the server's data root>"``. The result equals
        :func:`quantlab.backtest` run in-process on the same inputs.

        ``holdout=0.3`` keeps the last 30 % of the bars out: ``result.metrics`` then cover the
        first 70 % (what you select on) and ``result.metrics_oos`` the held-out bars (one run on
        all bars; each part measured from the equity it starts with).

        >>> r = lab.backtest(strategy, "sample", {"fast": 10}, fees=0.0005)   # doctest: +SKIP
        >>> r.metrics["sharpe"]                                              # doctest: +SKIP
        """
        from quantlab.engine.backtest import window_metrics
        from quantlab.engine.sweep.run import holdout_start

        from . import validation as _validation

        if holdout is not None:
            holdout_start(1_000_000, holdout)            # a bad fraction fails before the run
        strat = self._strategy(strategy)
        summary = await self._run_summary(strat, data, params, cash=cash, fees=fees, slippage=slippage,
                                          periods_per_year=periods_per_year, fill=fill, timeout=timeout)
        result = await self._load_run(summary["run_id"], summary.get("bars", 0), strat)
        cut = holdout_start(len(result.equity), holdout)
        if cut is not None:
            ref, _ = await self._data_ref(data)
            frame = await asyncio.to_thread(_validation.local_frame, ref, self._frames)
            close = frame["close"].to_numpy() if frame is not None and len(frame) == len(result.equity) else None
            n = len(result.equity)
            result.metrics_oos = window_metrics(result, cut, n, close)
            result.metrics = window_metrics(result, 0, cut, close)
            result.holdout = {"fraction": float(holdout), "start": str(result.equity.index[cut]), "bars": n - cut}
        return result

    async def _run_summary(self, strategy: Strategy | str, data: Any = "sample",
                           params: Mapping[str, Any] | None = None, *,
                           cash: float = DEFAULT_CASH, fees: float = DEFAULT_FEES, slippage: float = DEFAULT_SLIPPAGE,
                           periods_per_year: float | None = None, fill: str = "next_open",
                           timeout: float = 120.0) -> dict[str, Any]:
        """Backtest on the server and return only its summary (``run_id``, ``bars``, ``metrics``), not the
        series: what the code agent's checks need, without moving 100k bars of equity (fetch those later
        with :meth:`load_run`). Takes the arguments of :meth:`backtest` (no ``holdout``); not counted
        as a trial (the caller counts its own).

        >>> s = lab.run_summary(strategy, "sample", {"fast": 10})        # doctest: +SKIP
        >>> s["metrics"]["sharpe"], s["run_id"]                          # doctest: +SKIP
        """
        strat = self._strategy(strategy)
        ref, _ = await self._data_ref(data)
        args: dict[str, Any] = {"code": strat.code, "name": strat.name, "params": dict(params or {}), "data": ref,
                                "cash": cash, "fees": fees, "slippage": slippage, "fill": fill, "timeout": timeout}
        if periods_per_year is not None:
            args["periods_per_year"] = periods_per_year
        return await self._call(self.backtest_server, "run_backtest", args, timeout=timeout + 15)

    async def _load_run(self, run_id: str, bars: int = 0, strat: Strategy | None = None) -> BacktestResult:
        """The full :class:`BacktestResult` of the stored run ``run_id`` (``bars``: its length when
        known, so a long run comes in pages; ``strat``: the strategy to attach when the run has none).

        >>> r = lab.load_run(summary["run_id"], summary["bars"])          # doctest: +SKIP
        """
        from quantlab.engine.backtest import BacktestResult

        result = BacktestResult.from_dict(await self._fetch_run(run_id, bars))
        if result.strategy is None and strat is not None:
            result.strategy = strat
        return result

    backtest, abacktest = _twins(_counted(_backtest, lambda r: (r.name, 1)))
    run_summary, arun_summary = _twins(_run_summary)
    load_run, aload_run = _twins(_load_run)

    async def _fetch_run(self, run_id: str, bars: int) -> dict[str, Any]:
        """The whole run as ``to_dict()``; runs of many bars come in pages (one big JSON message is slow)."""
        from quantlab.engine.backtest import PAGE_BARS, afetch_all_pages

        args: dict[str, Any] = {"run_id": run_id, "part": "all"}
        if bars > PAGE_BARS:
            args.update(offset=0, limit=PAGE_BARS)

        def page(offset: int) -> Awaitable[Any]:
            return self._call(self.backtest_server, "get_run", {**args, "offset": offset, "limit": PAGE_BARS}, timeout=120.0)

        return await afetch_all_pages(await self._call(self.backtest_server, "get_run", args, timeout=120.0), page)

    async def _sweep(
        self,
        strategy: Strategy | str,
        data: Any = "sample",
        grid: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        *,
        executor: str = "processes",
        workers: int | None = None,
        cash: float = DEFAULT_CASH,
        fees: float = DEFAULT_FEES,
        slippage: float = DEFAULT_SLIPPAGE,
        periods_per_year: float | None = None,
        fill: str = "next_open",
        holdout: float | None = None,
        timeout: float = 600.0,
    ) -> "SweepResult":
        """Run a parameter sweep on the backtest server (its ``run_sweep`` tool) and return a :class:`SweepResult`.

        The same as :func:`quantlab.sweep` but the work happens where the backtest server runs —
        a shared server on a bigger machine, or its Dask cluster (``executor="dask://HOST:PORT"``).
        ``grid`` is a dict of lists (every combination) or a list of parameter dicts.
        ``holdout=0.3`` keeps the last 30 % of the bars out of the rows' metrics (so out of
        ``best()``) and reports them per row in ``result.metrics_oos``.

        >>> res = lab.sweep(strategy, "sample", {"fast": [5, 10, 20], "slow": [50, 100]})   # doctest: +SKIP
        >>> res.best("sharpe")                                                              # doctest: +SKIP
        """
        import pandas as pd

        from quantlab.engine.sweep import SweepResult

        if grid is None:
            raise TypeError("lab.sweep needs a grid, e.g. {'fast': [5, 10], 'slow': [50, 100]}.")
        strat = self._strategy(strategy)
        strat = self._strategy(strategy)
        ref, _ = await self._data_ref(data)
        args: dict[str, Any] = {"code": strat.code, "name": strat.name, "grid": grid if isinstance(grid, Mapping) else list(grid),
                                "data": ref, "cash": cash, "fees": fees, "slippage": slippage, "fill": fill,
                                "executor": executor, "timeout": timeout}
        if isinstance(args["grid"], Mapping):
            args["grid"] = {k: list(v) if not isinstance(v, (str, bytes)) and hasattr(v, "__iter__") else [v]
                            for k, v in args["grid"].items()}
        if workers is not None:
            args["workers"] = workers
        if periods_per_year is not None:
            args["periods_per_year"] = periods_per_year
        if holdout is not None:
            args["holdout"] = holdout
        answer = await self._call(self.backtest_server, "run_sweep", args, timeout=timeout + 30)
        return SweepResult.from_dict(answer["result"], data=data if isinstance(data, pd.DataFrame) else None)

    sweep, asweep = _twins(_counted(_sweep, lambda r: (r.strategy.name, len(r.frame))))

    def validate(self, result: Any, policy: DeploymentPolicy | None = None, *, data: Any = None) -> PolicyCheck:
        """Check a result against ``policy`` (default: :attr:`policy`), after the look-ahead check.

        For a :class:`BacktestResult` with its strategy, :func:`quantlab.check_lookahead` runs on
        the data it was backtested on (``data=`` overrides it; sandboxed when the sandbox
        exists), and ``result.metrics["causal"]`` and ``result.lookahead`` (the report) are set,
        so ``DeploymentPolicy(require_causal=True)`` can refuse look-ahead. A dict of metrics is
        checked as it is.

        >>> lab.validate(result).passed     # doctest: +SKIP
        True
        """
        self._check_causal(result, data)
        return (policy or self.policy).check(result)

    def _check_causal(self, result: Any, data: Any = None) -> None:
        import pandas as pd

        from . import validation as _validation

        strategy = getattr(result, "strategy", None)
        metrics = getattr(result, "metrics", None)
        if strategy is None or not isinstance(metrics, dict) or "causal" in metrics:
            return
        frame = data if isinstance(data, pd.DataFrame) else _validation.local_frame(
            data if isinstance(data, str) else getattr(result, "data_ref", None), self._frames)
        if frame is None:
            return                      # the policy shows "look-ahead not checked"
        report = _validation.lookahead(strategy, frame, getattr(result, "params", None))
        result.lookahead = report
        metrics["causal"] = bool(report.causal)

    # ----------------------------------------------------------------------- generate
    async def _generate(
        self,
        idea: str,
        data: Any = "sample",
        *,
        model: Any = None,
        max_attempts: int = 5,
        policy: DeploymentPolicy | None = None,
        budget_usd: float | None = None,
        params: Mapping[str, Any] | None = None,
        on_attempt: Callable[..., None] | None = None,
        **costs: Any,
    ) -> Any:
        """Ask a model for a strategy that implements ``idea``; check it; feed back failures; return a ``Generation``.

        ``model``: ``"openai:gpt-4.1"``, ``"anthropic:claude-..."``, any OpenAI-compatible
        endpoint (``quantlab.agent.ModelConfig(model, base_url=...)`` or ``OPENAI_BASE_URL``),
        ``"offline"`` (indicator building blocks, no LLM) or ``"replay:PATH"``; ``None`` reads
        ``quantlab.toml`` / ``[tool.quantlab.llm]`` / ``QUANTLAB_MODEL`` (else offline).
        Checks, cheapest first: parses, defines signals, sandbox, 500 synthetic bars, causal,
        backtest on ``data`` through the backtest server (``costs``: cash, fees, slippage), the
        ``policy``. Stops at the first candidate that passes, at ``max_attempts``, or before
        ``budget_usd`` would be exceeded. Nothing is stored or deployed: ``lab.store(gen.best)``.

        >>> gen = lab.generate("mean reversion on calm days", model="offline")   # doctest: +SKIP
        >>> gen.best.result.metrics["sharpe"]                                   # doctest: +SKIP
        """
        from quantlab.agent.loop import run_generation

        gen = await run_generation(self, idea, data, model=model, max_attempts=max_attempts, policy=policy,
                                   budget_usd=budget_usd, params=params, on_attempt=on_attempt, **costs)
        usage = gen.usage

        def count(state: dict[str, Any]) -> None:  # merged under the state lock, like every other update
            state["generations"] = int(state.get("generations", 0)) + 1
            tokens = state.setdefault("tokens", {"input": 0, "output": 0})
            tokens["input"] = int(tokens.get("input", 0)) + usage["input_tokens"]
            tokens["output"] = int(tokens.get("output", 0)) + usage["output_tokens"]
            state["cost_usd"] = round(float(state.get("cost_usd", 0.0)) + usage["cost_usd"], 8)

        self._state_file.update(count)
        return gen

    generate, agenerate = _twins(_generate)
