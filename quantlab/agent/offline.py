"""``model="offline"``: strategies from indicator building blocks, with no language model.

The idea's words pick building blocks (trend / moving average -> a moving-average cross,
momentum -> rate of change, mean reversion / Bollinger / z-score -> a z-score fade, breakout ->
a Donchian channel, RSI -> RSI bands, volatility -> a volatility filter around another block,
"long only" / "no shorts" -> the block's short side dropped), and each attempt tries the next composition or parameter set. Every answer says it came from
the building blocks (``offline — indicator building blocks, no LLM``); nothing here pretends to
be a language model. It lets notebooks, Binder and CI run the whole agent loop without a key.

>>> plan = blocks_for("a trend following idea with a volatility filter")
>>> plan[0][0], plan[0][1]
('sma_cross', True)
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Iterator

from .models import OFFLINE_LABEL

__all__ = ["BLOCKS", "blocks_for", "long_only", "OfflineGenerator"]

_HEADER = "import numpy as np\nimport pandas as pd\n\n\n"

BLOCKS: dict[str, dict[str, Any]] = {
    "sma_cross": {
        "words": ["trend", "moving average", "crossover", "cross", "sma", "ema", " ma "],
        "title": "moving-average cross",
        "args": "fast={fast}, slow={slow}",
        "body": ("    fast_ma = data.close.rolling(int(fast)).mean()\n"
                 "    slow_ma = data.close.rolling(int(slow)).mean()\n"
                 "    target = np.sign(fast_ma - slow_ma).fillna(0.0)\n"),
        "grid": [{"fast": 10, "slow": 50}, {"fast": 20, "slow": 100}, {"fast": 5, "slow": 30}, {"fast": 50, "slow": 200}],
    },
    "momentum": {
        "words": ["momentum", "rate of change", "roc", "strength", "winners"],
        "title": "momentum (rate of change)",
        "args": "lookback={lookback}",
        "body": ("    change = data.close.pct_change(int(lookback))\n"
                 "    target = np.sign(change).fillna(0.0)\n"),
        "grid": [{"lookback": 24}, {"lookback": 72}, {"lookback": 168}, {"lookback": 12}],
    },
    "zscore_reversion": {
        "words": ["mean reversion", "mean-reversion", "revert", "reversion", "bollinger", "z-score", "zscore",
                  "oversold", "overbought", "fade"],
        "title": "z-score mean reversion",
        "args": "window={window}, entry={entry}",
        "body": ("    mean = data.close.rolling(int(window)).mean()\n"
                 "    std = data.close.rolling(int(window)).std()\n"
                 "    z = (data.close - mean) / std\n"
                 "    target = pd.Series(np.where(z > entry, -1.0, np.where(z < -entry, 1.0, 0.0)), index=data.index)\n"),
        "grid": [{"window": 20, "entry": 2.0}, {"window": 50, "entry": 1.5}, {"window": 100, "entry": 2.0},
                 {"window": 20, "entry": 1.0}],
    },
    "breakout": {
        "words": ["breakout", "break out", "donchian", "channel", "new high", "new highs", "range"],
        "title": "Donchian channel breakout",
        "args": "window={window}",
        "body": ("    upper = data.high.rolling(int(window)).max().shift(1)\n"
                 "    lower = data.low.rolling(int(window)).min().shift(1)\n"
                 "    raw = pd.Series(np.where(data.close > upper, 1.0, np.where(data.close < lower, -1.0, np.nan)),\n"
                 "                    index=data.index)\n"
                 "    target = raw.ffill().fillna(0.0)\n"),
        "grid": [{"window": 55}, {"window": 20}, {"window": 100}, {"window": 200}],
    },
    "rsi": {
        "words": ["rsi", "relative strength"],
        "title": "RSI bands",
        "args": "period={period}, lower={lower}, upper={upper}",
        "body": ("    delta = data.close.diff()\n"
                 "    gain = delta.clip(lower=0).rolling(int(period)).mean()\n"
                 "    loss = (-delta.clip(upper=0)).rolling(int(period)).mean()\n"
                 "    rsi = 100 - 100 / (1 + gain / loss)\n"
                 "    target = pd.Series(np.where(rsi < lower, 1.0, np.where(rsi > upper, -1.0, 0.0)), index=data.index)\n"),
        "grid": [{"period": 14, "lower": 30, "upper": 70}, {"period": 14, "lower": 25, "upper": 75},
                 {"period": 7, "lower": 20, "upper": 80}, {"period": 21, "lower": 35, "upper": 65}],
    },
}
_VOL_WORDS = ["volatility", "volatile", "vol ", "risk", "calm", "atr"]
_LONG_WORDS = ["long only", "long-only", "no shorts", "no short", "never short", "without shorting"]
_VOL_FILTER = ("    vol = data.close.pct_change().rolling(int(vol_window)).std()\n"
               "    calm = vol <= vol.expanding(int(vol_window)).quantile(vol_quantile)\n"
               "    target = target.where(calm, 0.0)\n")


def _mentions(text: str, word: str) -> bool:
    return word in text if " " in word.strip() or not word.strip().isalnum() else re.search(rf"\b{re.escape(word.strip())}\b", text) is not None


def blocks_for(idea: str) -> list[tuple[str, bool, list[str]]]:
    """The building blocks the idea asks for, best match first: ``(block, volatility_filter, words found)``.

    With no recognised word the plan is a trend and a momentum block.
    """
    text = f" {idea.lower()} "
    found = []
    for name, block in BLOCKS.items():
        words = [w.strip() for w in block["words"] if _mentions(text, w)]
        if words:
            found.append((text.find(words[0]), name, words))
    found.sort()
    vol = any(_mentions(text, w) for w in _VOL_WORDS)
    if not found:
        return [("sma_cross", vol, []), ("momentum", vol, [])]
    return [(name, vol, words) for _, name, words in found]


def long_only(idea: str) -> bool:
    """Whether the idea rules out short positions ("long only", "no shorts" ...).

    >>> long_only("trend following, long only"), long_only("trend following")
    (True, False)
    """
    text = f" {idea.lower()} "
    return any(_mentions(text, w) for w in _LONG_WORDS)


def _code(block: str, params: dict[str, Any], vol: bool, long: bool = False) -> str:
    spec = BLOCKS[block]
    args = spec["args"].format(**params)
    if vol:
        args += ", vol_window=48, vol_quantile=0.8"
    body = spec["body"] + (_VOL_FILTER if vol else "")
    doc = (f'    """{spec["title"].capitalize()}{" with a volatility filter" if vol else ""}{", long only" if long else ""} '
           f'(quantlab offline building block)."""\n')
    return f"{_HEADER}def signals(data, {args}):\n{doc}{body}    return target.clip({0.0 if long else -1.0}, 1.0)\n"


class OfflineGenerator:
    """Proposes one composition of building blocks per attempt (see the module doc).

    >>> gen = OfflineGenerator("mean reversion on calm days")
    >>> answer = gen.next_answer()
    >>> answer["name"], "no LLM" in answer["rationale"]
    ('Z-score mean reversion + volatility filter', True)
    """

    def __init__(self, idea: str) -> None:
        self.idea = idea
        self.plan = blocks_for(idea)
        self.long_only = long_only(idea)
        self._iter = self._candidates()

    def _candidates(self) -> Iterator[dict[str, Any]]:
        grids = [[(block, vol, words, p) for p in BLOCKS[block]["grid"]] for block, vol, words in self.plan]
        for round_ in itertools.zip_longest(*grids):
            for item in round_:
                if item is None:
                    continue
                block, vol, words, params = item
                title = BLOCKS[block]["title"]
                name = title[0].upper() + title[1:] + (" + volatility filter" if vol else "") + (
                    ", long only" if self.long_only else "")
                why = (f"the idea mentions {', '.join(repr(w) for w in words)}" if words
                       else "no indicator named in the idea; trying the default trend and momentum blocks")
                yield {
                    "name": name,
                    "code": _code(block, params, vol, self.long_only),
                    "params": dict(params),
                    "rationale": f"{OFFLINE_LABEL}: {title}{' with a volatility filter' if vol else ''}"
                                 f"{', long only' if self.long_only else ''}, "
                                 f"parameters {params}; {why}.",
                }

    def next_answer(self) -> dict[str, Any] | None:
        """The next composition to try, or ``None`` when every one has been tried."""
        return next(self._iter, None)
