"""What :meth:`Lab.advance` and :meth:`Lab.parity` return: readable objects, not raw dicts.

Example
-------
>>> r = AdvanceResult.from_dict({"bars": 3, "fills": 1, "time": "2024-01-01T10:03:00Z",
...                              "first_time": "2024-01-01T10:01:00Z", "end_of_data": False,
...                              "deployments": [{"deployment_id": 1, "name": "sma", "symbol": "EURUSD",
...                                               "status": "running", "lots": 0.1, "target": 1.0, "error": None}]})
>>> r
AdvanceResult(3 bars to 2024-01-01 10:03 UTC, 1 fill; 1 deployment)
>>> r.deployments.loc[1, "lots"]
0.1
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from quantlab._util import html as qh

__all__ = ["AdvanceResult", "ParityReport"]


def _when(t: Any) -> str:
    if t is None:
        return "?"
    ts = pd.Timestamp(t)
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _table(rows: list[tuple[str, Any]]) -> str:
    """A key/value table whose values are already HTML."""
    return qh.kv_table((k, qh.raw(v)) for k, v in rows)


@dataclass
class AdvanceResult:
    """The paper market stepped forward: ``bars`` stepped, ``fills`` the deployments made on
    them, the market ``time`` reached (UTC), and each deployment's position (lots) and target.
    """

    bars: int
    fills: int
    time: pd.Timestamp | None
    first_time: pd.Timestamp | None = None
    end_of_data: bool = False
    deployments: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AdvanceResult":
        deps = pd.DataFrame(list(d.get("deployments") or []),
                            columns=["deployment_id", "name", "symbol", "status", "lots", "target", "error"])
        deps = deps.set_index("deployment_id")
        t = d.get("time")
        t0 = d.get("first_time")
        return cls(bars=int(d.get("bars", 0)), fills=int(d.get("fills", 0)),
                   time=pd.Timestamp(t) if t else None, first_time=pd.Timestamp(t0) if t0 else None,
                   end_of_data=bool(d.get("end_of_data")), deployments=deps)

    def to_dict(self) -> dict[str, Any]:
        return {"bars": self.bars, "fills": self.fills, "time": None if self.time is None else self.time.isoformat(),
                "end_of_data": self.end_of_data, "deployments": self.deployments.reset_index().to_dict("records")}

    def __repr__(self) -> str:
        n = len(self.deployments)
        end = ", end of data" if self.end_of_data else ""
        return (f"AdvanceResult({self.bars} bar{'s' * (self.bars != 1)} to {_when(self.time)}, "
                f"{self.fills} fill{'s' * (self.fills != 1)}; {n} deployment{'s' * (n != 1)}{end})")

    def _repr_html_(self) -> str:
        rows = [("bars stepped", f"{self.bars:,}"), ("market time", html.escape(_when(self.time))),
                ("fills", f"{self.fills:,}")]
        if self.end_of_data:
            rows.append(("feed", "<b>end of data</b>"))
        deps = ""
        if not self.deployments.empty:
            d = self.deployments.rename(columns={"lots": "position (lots)"})
            deps = d.to_html(na_rep="", float_format=lambda x: f"{x:g}")
        return f"<div><b>Market advanced</b>{_table(rows)}{deps}</div>"


@dataclass
class ParityReport:
    """Paper vs backtest, bar by bar, for one deployment.

    ``frame`` (one row per bar the deployment acted on): ``close``, ``paper_target`` (what
    the runner computed on its sliding window), ``backtest_target`` (``signals()`` over the
    whole history, as the backtest sees it), ``paper_position`` (lots / volume after the bar),
    ``position_match``, ``paper_fill`` (mean fill price on that bar), ``backtest_fill`` (the
    backtest's fill price: close ± slippage, where its target changed), ``fill_diff``.
    ``summary``: counts and the first bar that differs.
    """

    deployment_id: str
    name: str
    symbol: str
    frame: pd.DataFrame
    summary: dict[str, Any]

    @property
    def matches(self) -> bool:
        """``True`` when the paper position equals the backtest's target on every bar."""
        return bool(self.summary.get("position_mismatches", 0) == 0 and self.summary.get("bars", 0) > 0)

    def differences(self) -> pd.DataFrame:
        """The bars where the position or the target differs."""
        f = self.frame
        return f[~f["position_match"] | ~f["target_match"]]

    def __repr__(self) -> str:
        s = self.summary
        verdict = "positions match" if self.matches else f"{s['position_mismatches']} bar(s) differ (first {s['first_mismatch']})"
        diff = s.get("mean_abs_fill_diff")
        price = f"; fills {s['paper_fills']} paper / {s['backtest_fills']} backtest" + (
            f", mean |price diff| {diff:.6g}" if diff is not None else "")
        return f"ParityReport(deployment {self.deployment_id} {self.name!r} on {self.symbol}: {s['bars']} bars, {verdict}{price})"

    def _repr_html_(self) -> str:
        s = self.summary
        head = "paper matches the backtest" if self.matches else "paper differs from the backtest"
        rows = [(k.replace("_", " "), html.escape(f"{v:.6g}" if isinstance(v, float) else str(v))) for k, v in s.items()]
        diffs = self.differences()
        extra = ""
        if not diffs.empty:
            extra = "<p>first differing bars:</p>" + diffs.head(10).to_html(float_format=lambda x: f"{x:.6g}")
        return (f"<div><b>Parity</b> deployment <code>{html.escape(self.deployment_id)}</code> "
                f"<code>{html.escape(self.name)}</code> on {html.escape(self.symbol)}: "
                f"{qh.verdict(self.matches, head)}{_table(rows)}{extra}</div>")

    @classmethod
    def build(cls, bars: Mapping[str, Any], result: Any, *, volume_step: float | None = None) -> "ParityReport":
        """From the runner's ``deployment_bars(..., replay=True)`` answer and the backtest of its bars."""
        steps = bars["steps"]
        idx = pd.DatetimeIndex(pd.to_datetime(steps["bar_time"], unit="s", utc=True), name="time")
        volume = float(bars["volume"])
        frame = pd.DataFrame({"paper_target": np.asarray(steps["target"], dtype=float),
                              "paper_lots": np.asarray(steps["lots"], dtype=float),
                              "skipped": np.asarray(steps["skipped"], dtype=int)}, index=idx)
        replay = bars.get("replay") or {}
        rt = pd.Series(np.asarray(replay.get("target", []), dtype=float),
                       index=pd.DatetimeIndex(pd.to_datetime(replay.get("time", []), unit="s", utc=True)))
        close = pd.Series(np.asarray(replay.get("close", []), dtype=float), index=rt.index)
        frame.insert(0, "close", close.reindex(idx).to_numpy())
        frame["backtest_target"] = rt.reindex(idx).to_numpy()
        frame["paper_position"] = frame["paper_lots"] / volume
        tol = (volume_step or 0.01) / volume / 2 + 1e-9
        frame["target_match"] = (frame["paper_target"] - frame["backtest_target"]).abs() <= 1e-9
        frame["position_match"] = (frame["paper_position"] - frame["backtest_target"]).abs() <= tol
        fills = pd.DataFrame(bars.get("fills") or [], columns=["bar_time", "deal", "order", "type", "volume", "price", "position"])
        if not fills.empty:
            fills["t"] = pd.to_datetime(fills["bar_time"], unit="s", utc=True)
            w = fills.assign(pv=fills["price"] * fills["volume"]).groupby("t")[["pv", "volume"]].sum()
            frame["paper_fill"] = (w["pv"] / w["volume"]).reindex(idx).to_numpy()
        else:
            frame["paper_fill"] = np.nan
        bt_fill = pd.Series(np.nan, index=idx)
        n_bt = 0
        if result is not None:
            slip = float((getattr(result, "costs", None) or {}).get("slippage", 0.0))
            pos = result.positions
            if pos.index.tz is None:
                pos = pos.tz_localize("UTC")
            delta = pos.diff().fillna(pos)
            price = pd.Series(np.asarray(replay.get("close", []), dtype=float), index=rt.index)
            if getattr(result, "fill", "close") == "next_open":
                # the target of bar t fills at bar t+1's open: put it on the bar that decided it
                delta = delta.shift(-1).fillna(0.0)
                price = pd.Series(np.asarray(replay.get("open", []), dtype=float), index=rt.index).shift(-1)
            delta = delta.reindex(idx).fillna(0.0)
            chg = delta.abs() > 0
            bt_fill = price.reindex(idx) * (1 + slip * np.sign(delta))
            bt_fill[~chg] = np.nan
            n_bt = int(chg.sum())
        frame["backtest_fill"] = bt_fill.to_numpy()
        frame["fill_diff"] = frame["paper_fill"] - frame["backtest_fill"]
        bad = frame.index[~frame["position_match"]]
        diffs = frame["fill_diff"].dropna()
        summary = {
            "bars": int(len(frame)),
            "position_mismatches": int(len(bad)),
            "target_mismatches": int((~frame["target_match"]).sum()),
            "first_mismatch": None if not len(bad) else bad[0].strftime("%Y-%m-%d %H:%M UTC"),
            "skipped_bars": int(frame["skipped"].sum()),
            "paper_fills": int(len(fills)),
            "backtest_fills": n_bt,
            "mean_abs_fill_diff": float(diffs.abs().mean()) if len(diffs) else None,
            "costs": dict(getattr(result, "costs", None) or {}),
        }
        return cls(deployment_id=str(bars["deployment_id"]), name=str(bars.get("name")), symbol=str(bars["symbol"]),
                   frame=frame, summary=summary)
