"""Fixtures for the assets hub tests: real Git repositories in temp dirs, real backtests."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quantlab.engine.backtest import backtest
from quantlab.engine.data import synthetic
from quantlab.engine.strategy import Strategy
from quantlab.hub import AssetsHub

SMA_CODE = '''import pandas as pd


def signals(data, fast=5, slow=20):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
'''


def git(repo: Path | str, *args: str, input: str | None = None) -> str:
    """Run the real git in ``repo`` and return stdout (raises on failure)."""
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, input=input,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(repo)},
    ).stdout


@pytest.fixture(scope="session", name="git")
def git_fixture():
    """The :func:`git` runner (tests import nothing from conftest: --import-mode=importlib)."""
    return git


@pytest.fixture(scope="session")
def sma_code():
    return SMA_CODE


@pytest.fixture(scope="session")
def data():
    return synthetic(600, seed=7)


@pytest.fixture(scope="session")
def strategy():
    return Strategy.from_code(SMA_CODE, name="SMA cross")


@pytest.fixture(scope="session")
def result(data, strategy):
    return backtest(data, strategy, fees=0.0005, data_ref="synthetic:seed=7,bars=600")


@pytest.fixture
def hub(tmp_path):
    h = AssetsHub(tmp_path / "hub", author="Quant Tester <qt@example.com>", lock_timeout=1.0)
    yield h
    h.close()
