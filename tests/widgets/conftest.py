"""Fixtures for the widget and magics tests: real backtests (engine) and, when
``quantlab.lab.lab`` exists, one real Lab (embedded MCP servers, git hub) for the session."""
from __future__ import annotations

import base64
import re

import pytest

from quantlab.engine.backtest import backtest
from quantlab.engine.data import sample
from quantlab.engine.strategy import Strategy

SMA = """
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
"""
# on the shipped sample without costs: fast=5 passes the default DeploymentPolicy, fast=20 fails it (sharpe,
# profit factor). These tests are about what the widgets show, so their runs are frictionless (explicit fees=0)
# and keep that pass/fail mix; the default costs are checked where they are shown (test_headless).
FRICTIONLESS = {"fees": 0.0}
PASSING = {"fast": 5, "slow": 50}
FAILING = {"fast": 20, "slow": 50}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def sma() -> Strategy:
    return Strategy.from_code(SMA, name="SMA cross")


@pytest.fixture(scope="session")
def data():
    return sample()


@pytest.fixture(scope="session")
def passing(sma, data):
    return backtest(data, sma, params=PASSING, **FRICTIONLESS)


@pytest.fixture(scope="session")
def failing(sma, data):
    return backtest(data, sma, params=FAILING, **FRICTIONLESS)


@pytest.fixture(scope="session")
def sweep(sma, data):
    return [backtest(data, sma, params={"fast": f, "slow": 50}, **FRICTIONLESS) for f in (5, 10, 20)]


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert png[:8] == PNG_MAGIC, png[:16]
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def inline_pngs(html_text: str) -> list[bytes]:
    """Every base64 PNG inlined as ``<img src="data:image/png;base64,...">``."""
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html_text)]


def wait_for(cond, timeout=10.0):
    """Poll ``cond()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def lab_class():
    from quantlab.lab.lab import Lab

    return Lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    lab = lab_class().start(hub=str(tmp_path_factory.mktemp("hub")), clock="stepped")
    try:
        yield lab
    finally:
        lab.close()


VOID = {"img", "br", "hr", "meta", "input", "col", "wbr", "link", "source"}


def assert_html_ok(text: str) -> None:
    """Tags balance, attributes parse, and no HTML of ours was escaped into text."""
    from html.parser import HTMLParser

    stack: list[str] = []

    class Checker(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for name, value in attrs:
                assert name.isidentifier() or name.replace("-", "").isalnum(), f"broken attribute {name!r} in <{tag}>"
            if tag not in VOID:
                stack.append(tag)

        def handle_startendtag(self, tag, attrs):
            pass

        def handle_endtag(self, tag):
            assert stack and stack[-1] == tag, f"</{tag}> closes {stack[-1:] or 'nothing'}"
            stack.pop()

    Checker().feed(text)
    assert not stack, f"unclosed tags: {stack}"
    assert "&lt;span" not in text and "&lt;b " not in text and "&lt;code" not in text, "HTML escaped into text"


def parts(widget, cls) -> list:
    """Every widget of type ``cls`` inside ``widget``, depth first through the public ``.children``
    (the tree the front end draws), so tests drive a widget the way a user sees it."""
    found = []
    for child in getattr(widget, "children", ()):
        if isinstance(child, cls):
            found.append(child)
        found.extend(parts(child, cls))
    return found


def part(widget, cls, description: str | None = None):
    """The one ``cls`` control inside ``widget`` (with that ``description`` label when given)."""
    matches = [w for w in parts(widget, cls) if description is None or w.description == description]
    assert len(matches) == 1, f"{len(matches)} {cls.__name__} control(s) labelled {description!r}"
    return matches[0]
