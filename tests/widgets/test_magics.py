"""%%strategy and %quantlab in a real IPython InteractiveShell."""
from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from quantlab.engine.strategy import Strategy
from quantlab.magics import variable_name

SMA_CELL = """def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
"""


@pytest.fixture(scope="module")
def shell():
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "quantlab.magics")
    return sh


def run(shell, code):
    result = shell.run_cell(code, store_history=False)
    return result


def test_strategy_cell_binds_a_checked_strategy(shell, capsys):
    res = run(shell, "%%strategy SMA cross\n" + SMA_CELL)
    assert res.success
    s = shell.user_ns["sma_cross"]
    assert isinstance(s, Strategy) and s.name == "SMA cross" and s.params == {"fast": 10, "slow": 50}
    assert s.code == SMA_CELL
    assert "strategy 'SMA cross' checked -> variable `sma_cross` (params: fast=10, slow=50)" in capsys.readouterr().out


def test_identifier_name_and_var_option(shell):
    assert run(shell, "%%strategy momentum\n" + SMA_CELL).success
    assert shell.user_ns["momentum"].name == "momentum"
    assert run(shell, '%%strategy "mean reversion v2" -v mr\n' + SMA_CELL).success
    assert shell.user_ns["mr"].name == "mean reversion v2"
    assert "mean_reversion_v2" not in shell.user_ns


def test_syntax_error_prints_one_clear_line(shell, capsys):
    shell.user_ns.pop("broken", None)
    res = run(shell, "%%strategy broken\ndef signals(data:\n    return data.close * 0\n")
    assert not res.success  # stops "Run All" / papermill
    err = capsys.readouterr().err
    assert "UsageError: strategy 'broken': syntax error on line 1" in err
    assert "Traceback" not in err
    assert "broken" not in shell.user_ns


def test_missing_signals_and_bad_signals_are_reported(shell, capsys):
    assert not run(shell, "%%strategy nosig\ndef signal(data):\n    return data.close * 0\n").success
    assert "no top-level `signals` function" in capsys.readouterr().err
    # loads fine, but its positions are out of range: caught by the run on synthetic bars
    res = run(shell, "%%strategy wild\ndef signals(data):\n    return data.close * 5\n")
    err = capsys.readouterr().err
    assert not res.success and "fails on 500 synthetic bars" in err and "outside [-1, 1]" in err
    assert "Traceback" not in err and "wild" not in shell.user_ns
    assert run(shell, "%%strategy wild --no-run\ndef signals(data):\n    return data.close * 5\n").success
    assert shell.user_ns["wild"].name == "wild"


def test_usage_errors(shell, capsys):
    assert not run(shell, "%%strategy\n" + SMA_CELL).success
    assert "needs a name" in capsys.readouterr().err
    assert not run(shell, "%%strategy x -v 1bad\n" + SMA_CELL).success
    assert "not a valid Python variable name" in capsys.readouterr().err


def test_quantlab_status(shell, capsys):
    import quantlab

    assert run(shell, "%quantlab status").success
    out = capsys.readouterr().out
    assert out.startswith(f"quantlab {quantlab.__version__} (Python ")
    assert "active lab:" in out
    assert not run(shell, "%quantlab frobnicate").success
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,var", [("sma", "sma"), ("SMA cross", "sma_cross"), ("2 MAs", "s_2_mas"), ("class", "s_class"), ("!!", "strategy")]
)
def test_variable_name(name, var):
    assert variable_name(name) == var



def test_generate_cell_runs_on_the_active_lab_and_binds_the_generation(shell, lab, capsys):
    from quantlab.agent import Generation

    before = lab.state().get("generations", 0)
    res = run(shell, "%%generate gen --model offline --attempts 1\ntrend following on the sample\n")
    assert res.success, capsys.readouterr().err
    gen = shell.user_ns["gen"]
    assert isinstance(gen, Generation) and len(gen.attempts) == 1
    assert "gen: 1 attempt(s), stop:" in capsys.readouterr().out
    assert lab.state()["generations"] == before + 1  # counted through Lab.submit, like lab.generate


def test_lab_submit_names_the_steps_when_the_step_is_unknown(lab):
    with pytest.raises(ValueError, match=r"'genrate' is not a Lab step; steps: \[.*'generate'"):
        lab.submit("genrate", "idea")
