"""The runner's side of the broker: standard MT5 tool calls, symbol specs, bars, ticks, own positions.

Every call goes through :meth:`BrokerCalls._b` (one MCP round trip, timed per tool for
:meth:`BrokerCalls.timings`); a tool the broker lacks, or a failed call, is a
:class:`RunnerError` that says what the runner needs. Rate times may come as MT5
integers or ISO-8601 ``...Z`` strings (:func:`epoch`); bar 0, still forming, is dropped
by :meth:`BrokerCalls._completed`.

Example
-------
>>> epoch("2024-01-01T00:00:00Z"), iso(1704067200)
(1704067200, '2024-01-01T00:00:00Z')
>>> BrokerCalls.lots({"volume_step": 0.01, "volume_min": 0.01, "volume_max": 100.0}, -0.026)
-0.03
"""
from __future__ import annotations

import json
import math
import time as _time
from datetime import datetime, timezone
from typing import Any, Mapping

from quantlab.client import ClientError

__all__ = ["BrokerCalls", "RunnerError", "epoch", "iso", "unwrap", "canon", "EPS"]

EPS = 1e-9


class RunnerError(RuntimeError):
    """A request the runner refuses, or a broker answer it cannot use; the message says what to do."""


def epoch(t: Any) -> int:
    """Bar or tick time as epoch seconds: MT5 integers or ISO-8601 strings (``...Z``)."""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return int(t)
    if isinstance(t, str):
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    if isinstance(t, datetime):
        return int(t.timestamp())
    raise RunnerError(f"the broker returned a time the runner cannot read: {t!r}.")


def iso(t: int | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def unwrap(x: Any) -> Any:
    if isinstance(x, Mapping) and len(x) == 1 and "result" in x:
        return x["result"]
    return x


def canon(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


class BrokerCalls:
    """Mixin of :class:`~quantlab.runner.core.Runner`: the broker's standard MT5 tools as the runner uses them."""

    async def _b(self, tool: str, args: Mapping[str, Any] | None = None, timeout: float = 30.0) -> Any:
        if self.broker_tools and tool not in self.broker_tools:
            raise RunnerError(f"the broker {self.broker!r} has no tool {tool!r} (it has {sorted(self.broker_tools)}); "
                              "the runner needs the standard MT5 tools get_symbol_info, copy_rates_from_pos, "
                              "get_symbol_info_tick, positions_get and order_send.")
        t0 = _time.perf_counter()
        try:
            return unwrap(await self.mcp.call(self.broker, tool, dict(args or {}), timeout=timeout))
        except ClientError as exc:
            raise RunnerError(f"broker {self.broker!r}, {tool}: {exc}") from None
        finally:
            self._timed(tool, t0)

    def _timed(self, hop: str, t0: float) -> None:
        """Add the wall-clock time since ``t0`` to ``hop``'s total (see :meth:`timings`)."""
        tot = self._hops.get(hop)
        if tot is None:
            tot = self._hops[hop] = [0.0, 0]
        tot[0] += _time.perf_counter() - t0
        tot[1] += 1

    def timings(self) -> dict[str, dict[str, float]]:
        """Where the time goes, per hop since the runner started: ``{hop: {"calls", "total_s", "mean_ms"}}``.

        Hops: each broker tool by name (a round trip over MCP), ``signals`` (one sandboxed
        ``signals()`` evaluation, from the runner's side), ``sqlite`` (one bar's transaction)
        and ``bar`` (every running deployment acting on one completed bar, all of the above
        included). Concurrent deployments overlap, so hops of one bar can add up to more than ``bar``.

        >>> Runner(None, "broker", None).timings()                             # doctest: +SKIP
        {}
        """
        return {k: {"calls": n, "total_s": round(t, 6), "mean_ms": round(1000 * t / n, 3) if n else 0.0}
                for k, (t, n) in sorted(self._hops.items())}

    async def _account(self) -> bool:
        if self.hedging is None:
            acc = await self._b("get_account_info") if "get_account_info" in self.broker_tools or not self.broker_tools else None
            self.hedging = bool(acc) and int((acc or {}).get("margin_mode", 0)) == 2
        return self.hedging

    async def _spec(self, symbol: str) -> dict[str, Any]:
        spec = self._specs.get(symbol)
        if spec is None:
            try:
                info = await self._b("get_symbol_info", {"symbol": symbol})
            except RunnerError as exc:
                raise RunnerError(f"unknown symbol {symbol!r} on broker {self.broker!r}: {exc}") from None
            if not info:
                raise RunnerError(f"unknown symbol {symbol!r} on broker {self.broker!r}; see its get_symbols.")
            spec = {k: info.get(k) for k in ("name", "volume_min", "volume_step", "volume_max", "point", "digits",
                                              "trade_contract_size", "contract_size")}
            spec["name"] = spec["name"] or symbol
            spec["volume_min"] = float(spec["volume_min"] or 0.01)
            spec["volume_step"] = float(spec["volume_step"] or 0.01)
            spec["volume_max"] = float(spec["volume_max"] or 1e9)
            self._specs[symbol] = spec
        return spec

    async def _rates(self, symbol: str, timeframe: int, count: int) -> dict[str, Any]:
        import numpy as np

        rows = await self._b("copy_rates_from_pos", {"symbol": symbol, "timeframe": int(timeframe), "start_pos": 0,
                                                     "count": int(count)})
        rows = rows or []
        if isinstance(rows, Mapping) and "columns" in rows:
            cols = rows["columns"]
            rows = [dict(zip(cols, r)) for r in zip(*cols.values())]
        out = {"time": np.array([epoch(r["time"]) for r in rows], dtype=np.int64)}
        for f in ("open", "high", "low", "close"):
            out[f] = np.array([float(r[f]) for r in rows], dtype=np.float64)
        out["volume"] = np.array([float(r.get("tick_volume", r.get("real_volume", 0)) or 0) for r in rows], dtype=np.float64)
        return out

    @staticmethod
    def _completed(bars: dict[str, Any]) -> dict[str, Any]:
        """Drop bar 0, the bar still forming (``copy_rates_from_pos(start_pos=0)`` ends with it, as on MT5)."""
        return {k: v[:-1] for k, v in bars.items()}

    async def _tick(self, symbol: str) -> dict[str, Any]:
        tick = await self._b("get_symbol_info_tick", {"symbol": symbol})
        if not tick:
            raise RunnerError(f"the broker has no price for {symbol!r} (get_symbol_info_tick returned nothing).")
        return tick

    async def _own_positions(self, dep: Mapping[str, Any]) -> tuple[float, list[dict[str, Any]]]:
        rows = await self._b("positions_get", {"symbol": dep["symbol"]}) or []
        mine = [p for p in rows if int(p.get("magic") or 0) == int(dep["magic"])]
        lots = round(sum(float(p["volume"]) * (1 if int(p["type"]) == 0 else -1) for p in mine), 8)
        return lots, mine

    async def _now(self, symbol: str) -> int:
        return epoch((await self._tick(symbol))["time"])

    @staticmethod
    def lots(spec: Mapping[str, Any], x: float) -> float:
        step = spec["volume_step"]
        v = round(round(abs(x) / step) * step, 8)
        if v < spec["volume_min"] - EPS:
            v = 0.0
        v = min(v, spec["volume_max"])
        return math.copysign(v, x) if v else 0.0
