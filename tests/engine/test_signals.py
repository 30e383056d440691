"""One rule from signals to target positions: the backtest, a sweep row and Strategy.coerce agree."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlab import SignalError, Strategy, backtest, sweep
from quantlab.engine import data as qdata
from quantlab.engine.signals import to_targets

BAD = {
    "text": "def signals(data):\n    return pd.Series('buy', index=data.index)",
    "outside": "def signals(data):\n    return data.close * 0 + 2",
    "misaligned": "def signals(data):\n    return pd.Series(1.0, index=data.index + pd.Timedelta('1D'))",
    "short": "def signals(data):\n    return (data.close * 0)[:-1]",
}


@pytest.fixture(scope="module")
def df():
    return qdata.synthetic(300, seed=4)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_what_the_backtest_refuses_a_sweep_row_refuses_with_the_same_message(kind, df):
    code = "import pandas as pd\n" + BAD[kind]
    with pytest.raises(SignalError) as info:
        backtest(df, code, sandbox=False)
    row = sweep(code, df, [{}], progress=False).frame.iloc[0]
    assert row["error"] == f"SignalError: {info.value}"
    strategy = Strategy.coerce(code)
    with pytest.raises(SignalError) as direct:
        to_targets(strategy.function(df), df, strategy.name)
    assert str(direct.value) == str(info.value)


def test_nan_is_flat_and_a_positional_series_is_accepted(df):
    raw = np.where(np.arange(len(df)) % 2 == 0, np.nan, 0.5)
    assert to_targets(pd.Series(raw), df).tolist() == [0.0 if i % 2 == 0 else 0.5 for i in range(len(df))]
    assert to_targets(pd.DataFrame({"x": raw}, index=df.index), df).sum() == pytest.approx(0.5 * (len(df) // 2))


def test_coerce_loads_files_and_code_and_refuses_other_things(tmp_path):
    path = tmp_path / "flat.py"
    path.write_text("def signals(data, n=2):\n    return data.close * 0\n")
    assert Strategy.coerce(str(path)).name == "flat" and Strategy.coerce(path).params == {"n": 2}
    assert Strategy.coerce(path.read_text(), name="x").name == "x"
    with pytest.raises(FileNotFoundError, match="strategy file not found"):
        Strategy.coerce(str(tmp_path / "missing.py"))
    with pytest.raises(TypeError, match="a quantlab Strategy, its source code or the path of a .py file, got list"):
        Strategy.coerce([])
