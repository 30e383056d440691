"""Strategy deployments on the paper broker: run ``signals()`` on new bars and trade toward its target.

A deployment is a strategy (the engine's contract: ``signals(data, **params)``
returns target positions in ``[-1, 1]``) bound to a symbol, a timeframe and a
``volume`` (lots at target 1). On every completed bar the broker evaluates the
strategy and sends market orders through the same path as ``order_send``
(``magic`` = the deployment id) so that its position is ``target × volume``
lots (rounded to the symbol's volume step).

Batching: when several bars arrive at once (a big ``advance`` or a restart),
``signals()`` is called **once** on a window of ``lookback`` bars plus all new
bars, and the targets of the new bars are executed bar by bar at each bar's
close. This is exact only for *causal* strategies (the target at a bar uses
only data up to that bar), which is what the engine's backtest assumes too.

Lifecycle: ``pending`` → ``running`` → ``stopped`` (``stop_deployment`` closes
its positions) or ``failed`` (the strategy raised or returned something that is
not a target series; its error is kept and journaled, other deployments go on).

Example
-------
>>> from quantlab.servers.broker.book import Broker
>>> b = Broker.open(":memory:", symbols=["EURUSD"])
>>> d = b.deployments.deploy("long", "def signals(data):\\n    return data.close * 0 + 1", {}, "EURUSD", "M1", 0.1, {})
>>> d["status"]
'running'
>>> _ = b.advance(3); b.deployments.get(d["deployment_id"])["lots"]
0.1
"""
from __future__ import annotations

import html
import json
import math
import time as _time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from quantlab.engine.strategy import Strategy


def _strategies():
    """The engine's strategy module, imported on first use: importing the engine loads
    pandas, which would add ~0.4 s to every broker start-up."""
    from quantlab.engine import strategy

    return strategy


#: limits of one sandboxed ``signals()`` evaluation of a deployment
SANDBOX_LIMITS = {"cpu_seconds": 60, "wall_seconds": 120, "memory_mb": 4096, "output_bytes": 200_000}


def _load_sandboxed(code: str, name: str) -> "Strategy":
    """The deployment's strategy with its code confined to the strategy sandbox (docs/sandbox.md):
    checked statically, loaded and evaluated only in sandboxed child processes, never in the broker."""
    from quantlab.engine import sandbox

    return sandbox.load(code, name=name, limits=SANDBOX_LIMITS)

from . import constants as C
from .book import EPS, TradeError

__all__ = ["Deployments"]

CONFIG_KEYS = {"lookback": int, "comment": str, "max_batch": int}
ALERT_KINDS = ("price_above", "price_below", "drawdown")
MAX_BATCH = 50_000  # new bars per signals() call when catching up
MAX_CODE = 1_000_000  # characters of strategy source
STATUSES = ("pending", "running", "stopped", "failed")


def _canon(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class Deployments:
    """Deployment registry and runner of one :class:`~quantlab.servers.broker.book.Broker`."""

    def __init__(self, broker: Any):
        self.b = broker
        self.st = broker.store
        self._strategies: dict[int, tuple[str, Strategy]] = {}
        self._live: dict[int, dict] = {}
        self._journal: list[tuple] = []

    def __repr__(self) -> str:
        counts = dict(self.st.conn.execute("SELECT status, count(*) FROM deployments GROUP BY status").fetchall())
        return f"Deployments({counts or 'none'})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{d['deployment_id']}</td><td>{html.escape(d['name'])}</td><td>{d['symbol']}</td><td>{d['status']}</td>"
            f"<td>{d['lots']:g}</td><td>{d['pnl']:.2f}</td></tr>" for d in self.list())
        return ("<table><tr><th>id</th><th>name</th><th>symbol</th><th>status</th><th>lots</th><th>pnl</th></tr>"
                f"{rows}</table>")

    @contextmanager
    def _tx(self):
        """A store transaction that also forgets buffered journal lines if it rolls back."""
        try:
            with self.st.tx():
                yield
        except BaseException:
            self._journal.clear()
            raise

    # -- helpers --------------------------------------------------------------------
    def _row(self, dep_id: Any) -> dict[str, Any]:
        if isinstance(dep_id, bool) or not isinstance(dep_id, (int, float, str)):
            raise TradeError(C.TRADE_RETCODE_INVALID, f"deployment_id must be an integer, got {dep_id!r}.")
        try:
            i = int(dep_id)
        except ValueError:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"deployment_id must be an integer, got {dep_id!r}.") from None
        row = self.st.one("SELECT * FROM deployments WHERE id = ?", (i,))
        if row is None:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"no deployment {i}; list them with list_deployments.")
        return row

    def _log(self, dep_id: int | None, kind: str, message: str, data: dict | None = None, t: int | None = None) -> None:
        self._journal.append((dep_id, self.b.now() if t is None else t, _time.time(), kind, message,
                              json.dumps(data or {}, default=str)))

    def _flush(self) -> None:
        if self._journal:
            self.st.conn.executemany(
                "INSERT INTO journal (deployment_id, time, wall_time, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                self._journal)
            self._journal.clear()

    def _strategy(self, dep: dict) -> Strategy:
        cached = self._strategies.get(dep["id"])
        if cached and cached[0] == dep["sha256"]:
            return cached[1]
        s = _load_sandboxed(dep["code"], dep["name"])
        self._strategies[dep["id"]] = (dep["sha256"], s)
        return s

    def _lots(self, spec, x: float) -> float:
        steps = round(abs(x) / spec.volume_step)
        v = round(steps * spec.volume_step, 8)
        if v < spec.volume_min - EPS:
            v = 0.0
        return math.copysign(v, x) if v else 0.0

    def public(self, dep: dict) -> dict[str, Any]:
        """The user-facing view of a deployment row (with PnL)."""
        out = {k: dep[k] for k in ("name", "sha256", "symbol", "timeframe", "volume", "status", "created", "updated",
                                   "last_bar_time", "lots", "target", "error", "bars", "evaluations")}
        out["deployment_id"] = dep["id"]
        out["magic"] = dep["id"]
        out["params"] = json.loads(dep["params"])
        out["config"] = json.loads(dep["config"])
        out.update(self.pnl(dep))
        out["position"] = dep["lots"]
        out["last_error"] = dep["error"]
        return out

    def pnl(self, dep: dict) -> dict[str, Any]:
        """Realised, floating and total PnL (account currency) of a deployment, from its own deals."""
        spec = self.b.feed.spec(dep["symbol"])
        row = self.st.one(
            "SELECT count(*) AS n, coalesce(sum(profit + commission), 0) AS realized, "
            "coalesce(sum(CASE WHEN type = 1 THEN volume * price ELSE -volume * price END), 0) AS cash, "
            "coalesce(sum(commission), 0) AS comm FROM deals WHERE magic = ?", (dep["id"],))
        q = self.b.quote(spec.name)
        lots = dep["lots"]
        mark = q["bid"] if lots > 0 else q["ask"]
        total = (row["cash"] + lots * mark) * spec.contract_size
        total = self.b._usd(spec, total, mark) + row["comm"]
        return {"pnl": round(total, 2), "realized_pnl": round(row["realized"], 2),
                "floating_pnl": round(total - row["realized"], 2), "trades": row["n"]}

    # -- tools ----------------------------------------------------------------------
    def deploy(self, name: str, code: str, params: dict | None, symbol: str, timeframe: Any, volume: float,
               config: dict | None) -> dict[str, Any]:
        """Validate and start a deployment (same code hash + params + symbol running → that one).

        >>> from quantlab.servers.broker.book import Broker
        >>> b = Broker.open(":memory:", symbols=["EURUSD"])
        >>> code = "def signals(data):\\n    return data.close * 0 - 1"
        >>> a = b.deployments.deploy("short", code, {}, "EURUSD", 5, 0.1, {})
        >>> b.deployments.deploy("again", code, {}, "EURUSD", 5, 0.1, {})["existing"]
        True
        """
        if not isinstance(name, str) or not name.strip():
            raise TradeError(C.TRADE_RETCODE_INVALID, "name must be a non-empty string.")
        if isinstance(code, str) and len(code) > MAX_CODE:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"the code is {len(code):,} characters, above the cap of {MAX_CODE:,}; "
                             "deploy the strategy function, not its data.")
        from quantlab.engine.sandbox import SandboxError

        try:
            strat = _load_sandboxed(code, name.strip())
            resolved = strat.resolve_params(params or {})
        except (_strategies().StrategyError, SandboxError) as exc:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"the strategy code is not usable: {exc}") from None
        if params is not None and not isinstance(params, dict):
            raise TradeError(C.TRADE_RETCODE_INVALID, "params must be an object of parameter values.")
        spec = self.b.spec(symbol)
        try:
            tf = C.parse_timeframe(timeframe)
        except ValueError as exc:
            raise TradeError(C.TRADE_RETCODE_INVALID, str(exc)) from None
        vol = self.b._check_volume(spec, volume)
        config = dict(config or {})
        bad = sorted(set(config) - set(CONFIG_KEYS))
        if bad:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"unknown config key(s) {bad}; allowed: {sorted(CONFIG_KEYS)}.")
        lookback = config.setdefault("lookback", self.b.config.lookback)
        if isinstance(lookback, bool) or not isinstance(lookback, int) or not 1 <= lookback <= 100_000:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"config.lookback must be an integer in 1..100000, got {lookback!r}.")
        p = _canon(resolved)
        with self._tx():
            same = self.st.one(
                "SELECT * FROM deployments WHERE sha256 = ? AND params = ? AND symbol = ? AND status IN ('pending', 'running') "
                "ORDER BY id LIMIT 1", (strat.sha256, p, spec.name))
            if same is not None:
                out = self.public(same)
                out["existing"] = True
                return out
            fr = self.b.feed.frame(spec.name, tf, 1)
            last = int(fr["time"][-1]) if len(fr["time"]) else 0
            now = _time.time()
            dep_id = self.st.insert("deployments", {
                "name": name.strip(), "code": code, "sha256": strat.sha256, "params": p, "symbol": spec.name, "timeframe": tf,
                "volume": vol, "config": _canon(config), "status": "pending", "created": now, "updated": now,
                "started_time": self.b.now(), "last_bar_time": last, "lots": 0.0, "target": 0.0, "error": None,
            })
            self._strategies[dep_id] = (strat.sha256, strat)
            self._log(dep_id, "status", "deployed: pending", {"params": resolved, "symbol": spec.name, "timeframe": tf, "volume": vol})
            self.st.update("deployments", "id", dep_id, status="running", updated=_time.time())
            self._log(dep_id, "status", "pending -> running", {"from_bar_time": last})
            self._flush()
            out = self.public(self._row(dep_id))
            out["existing"] = False
            return out

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """All deployments (or those with ``status``), oldest first, with PnL."""
        if status is not None and status not in STATUSES:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"status must be one of {STATUSES}, got {status!r}.")
        with self.st.lock:
            rows = self.st.q("SELECT * FROM deployments" + (" WHERE status = ?" if status else "") + " ORDER BY id",
                             (status,) if status else ())
            return [self.public(r) for r in rows]

    def get(self, dep_id: Any) -> dict[str, Any]:
        with self.st.lock:
            dep = self._row(dep_id)
            out = self.public(dep)
            out["positions"] = self.b.positions(magic=dep["id"])
            out["last_journal"] = self.st.q("SELECT * FROM journal WHERE deployment_id = ? ORDER BY id DESC LIMIT 5", (dep["id"],))
            return out

    def stop(self, dep_id: Any) -> dict[str, Any]:
        """Close the deployment's positions through the order path and mark it ``stopped``.

        >>> from quantlab.servers.broker.book import Broker
        >>> b = Broker.open(":memory:", symbols=["EURUSD"])
        >>> d = b.deployments.deploy("long", "def signals(data):\\n    return data.close * 0 + 1", {}, "EURUSD", 1, 0.1, {})
        >>> _ = b.advance(2); b.deployments.stop(d["deployment_id"])["lots"]
        0.0
        """
        with self._tx():
            dep = self._row(dep_id)
            if dep["status"] in ("stopped",):
                return self.public(dep)
            if abs(dep["lots"]) > EPS:
                self._trade(dep, 0.0, reason="stop")
                self.st.update("deployments", "id", dep["id"], lots=dep["lots"])
            prev = dep["status"]
            self.st.update("deployments", "id", dep["id"], status="stopped", target=0.0, updated=_time.time())
            self._log(dep["id"], "status", f"{prev} -> stopped", {"closed_lots": dep["lots"]})
            self._flush()
            return self.public(self._row(dep["id"]))

    def journal(self, dep_id: Any, limit: int = 200, after_id: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise TradeError(C.RES_E_INVALID_PARAMS, f"limit must be an integer in 1..10000, got {limit!r}.")
        with self.st.lock:
            dep = self._row(dep_id)
            sql = "SELECT * FROM journal WHERE deployment_id = ? AND id > ?" + (" AND kind = ?" if kind else "") + " ORDER BY id LIMIT ?"
            args = [dep["id"], int(after_id)] + ([kind] if kind else []) + [limit]
            rows = self.st.q(sql, args)
        for r in rows:
            r["data"] = json.loads(r["data"] or "{}")
        return rows

    def set_alert(self, kind: str, threshold: float, symbol: str | None = None, deployment_id: int | None = None) -> dict:
        if kind not in ALERT_KINDS:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"kind must be one of {ALERT_KINDS}, got {kind!r}.")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"threshold must be a positive number, got {threshold!r}.")
        with self._tx():
            dep = self._row(deployment_id) if deployment_id is not None else None
            if kind.startswith("price"):
                symbol = self.b.spec(symbol or (dep or {}).get("symbol")).name
            else:
                symbol = None
            peak = (self.pnl(dep)["pnl"] if dep else self.b._totals()["equity"]) if kind == "drawdown" else None
            aid = self.st.insert("alerts", {"deployment_id": dep["id"] if dep else None, "symbol": symbol, "kind": kind,
                                            "threshold": float(threshold), "status": "active", "created": _time.time(),
                                            "fired_time": None, "message": None, "peak": peak})
            self._log(dep["id"] if dep else None, "alert", f"alert {aid} set: {kind} {threshold:g}" + (f" on {symbol}" if symbol else ""))
            self._flush()
            return self.st.one("SELECT * FROM alerts WHERE id = ?", (aid,))

    def list_alerts(self, deployment_id: int | None = None, status: str | None = None) -> list[dict]:
        conds, args = [], []
        if deployment_id is not None:
            conds.append("deployment_id = ?")
            args.append(int(deployment_id))
        if status:
            conds.append("status = ?")
            args.append(status)
        with self.st.lock:
            return self.st.q("SELECT * FROM alerts" + (" WHERE " + " AND ".join(conds) if conds else "") + " ORDER BY id", args)

    # -- runner ---------------------------------------------------------------------
    def _fail(self, dep: dict, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        dep["status"] = "failed"
        dep["error"] = msg
        self.st.update("deployments", "id", dep["id"], status="failed", error=msg, updated=_time.time())
        self._log(dep["id"], "error", f"strategy failed: {msg}")
        self._log(dep["id"], "status", "running -> failed")

    def _targets(self, dep: dict, strat: Strategy, fr: dict[str, np.ndarray], params: dict) -> np.ndarray:
        import pandas as pd  # only when a deployment runs: keeps the server's start fast

        idx = pd.DatetimeIndex(pd.to_datetime(fr["time"], unit="s", utc=True), name="time")
        df = pd.DataFrame({"open": fr["open"], "high": fr["high"], "low": fr["low"], "close": fr["close"],
                           "volume": fr["tick_volume"].astype(float)}, index=idx)
        sig = strat.signals(df, **params)
        if isinstance(sig, pd.DataFrame):
            if sig.shape[1] != 1:
                raise TypeError(f"signals() returned a DataFrame with {sig.shape[1]} columns; return one Series of targets.")
            sig = sig.iloc[:, 0]
        if isinstance(sig, pd.Series):
            if len(sig) != len(df):
                aligned = sig.reindex(df.index)
                if len(sig) and aligned.isna().all() and not sig.isna().all():
                    raise ValueError(f"signals() returned {len(sig)} values indexed unlike the {len(df)} bars; "
                                     "return a Series on data.index (one target per bar).")
                sig = aligned
            arr = pd.to_numeric(sig, errors="coerce").to_numpy(dtype=float)
        elif np.isscalar(sig):
            arr = np.full(len(df), float(sig))
        else:
            arr = np.asarray(sig, dtype=float).reshape(-1)
            if len(arr) != len(df):
                raise ValueError(f"signals() returned {len(arr)} values for {len(df)} bars; return one target per bar.")
        return np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)

    def collect(self, old: int, new: int) -> dict[int, list[tuple]]:
        """Evaluate every running deployment on the bars completed in steps (old, new]."""
        events: dict[int, list[tuple]] = {}
        self._live = {}
        feed = self.b.feed
        for dep in self.st.q("SELECT * FROM deployments WHERE status = 'running' ORDER BY id"):
            self._live[dep["id"]] = dep
            dep["_new_bars"] = 0
            try:
                strat = self._strategy(dep)
                params = json.loads(dep["params"])
                cfg = json.loads(dep["config"])
                lookback = int(cfg.get("lookback", self.b.config.lookback))
                batch = int(cfg.get("max_batch", MAX_BATCH))
                sym, tf = dep["symbol"], dep["timeframe"]
                secs = C.TIMEFRAME_MINUTES[tf] * 60
                end = feed.visible(sym, new)
                if end <= 0:
                    continue
                t_last = int(feed.base(sym, end).time[end - 1])
                n_est = max(0, (t_last - int(dep["last_bar_time"] or 0)) // secs + 1)
                if n_est == 0:
                    continue
                fr = feed.frame(sym, tf, lookback + min(n_est, 10**7), end)
                times = fr["time"]
                first = int(np.searchsorted(times, int(dep["last_bar_time"] or 0), side="right"))
                if first >= len(times):
                    continue
                for lo in range(first, len(times), batch):
                    hi = min(lo + batch, len(times))
                    w0 = max(0, lo - lookback)
                    win = {k: v[w0:hi] for k, v in fr.items()}
                    targets = self._targets(dep, strat, win, params)[lo - w0:]
                    dep["evaluations"] += 1
                    bar_times = times[lo:hi]
                    steps = self._steps(bar_times + secs, old, new)
                    for c, tgt, bt in zip(steps.tolist(), targets.tolist(), bar_times.tolist()):
                        events.setdefault(c, []).append((dep, tgt, bt))
                    dep["_new_bars"] += hi - lo
            except Exception as exc:  # noqa: BLE001 - user code can raise anything
                self._fail(dep, exc)
                self._live.pop(dep["id"], None)
                events = {c: [e for e in evs if e[0]["id"] != dep["id"]] for c, evs in events.items()}
        return events

    def _steps(self, ends: np.ndarray, old: int, new: int) -> np.ndarray:
        """Cursor step at which bars ending at ``ends`` are complete, clamped to (old, new]."""
        feed = self.b.feed
        if feed.kind == "synthetic":
            steps = (ends - feed.start) // feed.step
        else:
            steps = np.searchsorted(feed._timeline, ends, side="left")
        return np.clip(steps, old + 1, new)

    def act(self, dep: dict, target: float, bar_time: int) -> None:
        """Trade ``dep`` toward ``target`` at the current bar (called by ``Broker.advance``)."""
        dep["_traded"] = False
        if dep["status"] != "running":
            return
        dep["bars"] += 1
        dep["last_bar_time"] = bar_time
        if abs(target - dep["target"]) > EPS:
            self._log(dep["id"], "signal", f"target {dep['target']:g} -> {target:g}", {"target": target, "bar_time": bar_time})
            dep["target"] = target
        spec = self.b.feed.spec(dep["symbol"])
        desired = self._lots(spec, target * dep["volume"])
        if abs(desired - dep["lots"]) > EPS:
            self._trade(dep, desired)
            dep["_traded"] = True

    def _trade(self, dep: dict, desired: float, reason: str = "signal") -> None:
        """Send market orders so the deployment holds ``desired`` lots (negative = short)."""
        b = self.b
        spec = b.feed.spec(dep["symbol"])
        base = {"action": C.TRADE_ACTION_DEAL, "symbol": spec.name, "magic": dep["id"], "comment": f"ql dep {dep['id']}"}
        requests: list[dict] = []
        diff = round(desired - dep["lots"], 8)
        if b._hedging and dep["lots"] and (desired * dep["lots"] <= 0 or abs(desired) < abs(dep["lots"])):
            # close own positions (newest first) as far as needed
            need = abs(diff) if desired * dep["lots"] > 0 else abs(dep["lots"])
            for p in reversed(b.positions(magic=dep["id"])):
                if need <= EPS:
                    break
                v = min(p["volume"], round(need, 8))
                requests.append({**base, "type": 1 - p["type"], "volume": v, "position": p["ticket"]})
                need = round(need - v, 8)
            rest = desired if desired * dep["lots"] <= 0 else 0.0
            if abs(rest) > EPS:
                requests.append({**base, "type": 0 if rest > 0 else 1, "volume": abs(rest)})
        else:
            requests.append({**base, "type": 0 if diff > 0 else 1, "volume": abs(diff)})
        for req in requests:
            vol = req["volume"]
            self._log(dep["id"], "order", f"{'buy' if req['type'] == 0 else 'sell'} {vol:g} {spec.name} ({reason})", {"request": req})
            try:
                with self.st.tx():
                    res = b._send(dict(req), reason=C.ORDER_REASON_EXPERT)
            except TradeError as exc:
                self._log(dep["id"], "error", f"order rejected: {exc}", {"retcode": exc.retcode, "request": req})
                return
            signed = vol if req["type"] == 0 else -vol
            dep["lots"] = round(dep["lots"] + signed, 8)
            self._log(dep["id"], "fill", f"filled {vol:g} @ {res['price']} (deal {res['deal']})",
                      {"deal": res["deal"], "order": res["order"], "price": res["price"], "volume": vol, "type": req["type"],
                       "lots": dep["lots"]})

    def on_stop_fill(self, pos: dict, side: int, price: float, why: int) -> None:
        """A deployment's position was closed by SL/TP: book the change of its lots."""
        dep = self._live.get(pos["magic"])
        if dep is None:
            row = self.st.one("SELECT * FROM deployments WHERE id = ?", (pos["magic"],)) if pos["magic"] else None
            if row is None:
                return
            signed = pos["volume"] if pos["type"] == 0 else -pos["volume"]
            self.st.update("deployments", "id", row["id"], lots=round(row["lots"] - signed, 8))
            return
        signed = pos["volume"] if pos["type"] == 0 else -pos["volume"]
        dep["lots"] = round(dep["lots"] - signed, 8)
        self._log(dep["id"], "fill", f"{'stop loss' if why == C.DEAL_REASON_SL else 'take profit'} closed {pos['volume']:g} @ {price}",
                  {"position": pos["ticket"], "price": price})

    def finish(self, old: int, new: int) -> None:
        """Persist deployment progress, fire alerts, flush the journal (same transaction as the advance)."""
        now = _time.time()
        rows = []
        for dep in self._live.values():
            if dep["status"] != "running":
                continue
            rows.append((dep["lots"], dep["target"], dep["last_bar_time"], dep["bars"], dep["evaluations"], now, dep["id"]))
        if rows:
            self.st.conn.executemany(
                "UPDATE deployments SET lots = ?, target = ?, last_bar_time = ?, bars = ?, evaluations = ?, updated = ? WHERE id = ?",
                rows)
        self._alerts(old, new)
        self._flush()
        self._live = {}

    def _alerts(self, old: int, new: int) -> None:
        alerts = self.st.q("SELECT * FROM alerts WHERE status = 'active'")
        if not alerts:
            return
        feed = self.b.feed
        for a in alerts:
            msg = None
            if a["kind"] in ("price_above", "price_below"):
                sym = a["symbol"]
                lo, hi = feed.visible(sym, old), feed.visible(sym, new)
                if hi <= lo:
                    continue
                s = feed.base(sym, hi)
                if a["kind"] == "price_above":
                    m = float(np.max(s.high[lo:hi]))
                    if m >= a["threshold"]:
                        msg = f"{sym} traded at {m} >= {a['threshold']:g}"
                else:
                    m = float(np.min(s.low[lo:hi]))
                    if m <= a["threshold"]:
                        msg = f"{sym} traded at {m} <= {a['threshold']:g}"
            else:
                if a["deployment_id"] is not None:
                    dep = self.st.one("SELECT * FROM deployments WHERE id = ?", (a["deployment_id"],))
                    value = self.pnl(dep)["pnl"]
                    what = f"deployment {dep['id']} PnL"
                else:
                    value = self.b._totals()["equity"]
                    what = "account equity"
                peak = max(a["peak"] if a["peak"] is not None else value, value)
                if peak - value >= a["threshold"]:
                    msg = f"drawdown alert: {what} {value:.2f} is {peak - value:.2f} below its peak {peak:.2f} (threshold {a['threshold']:g})"
                self.st.update("alerts", "id", a["id"], peak=peak)
            if msg:
                self.st.update("alerts", "id", a["id"], status="fired", fired_time=self.b.now(), message=msg)
                self._log(a["deployment_id"], "alert", msg, {"alert_id": a["id"], "kind": a["kind"]})
