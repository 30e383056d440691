"""Safe slugs and paths: nothing a name can contain makes a path escape generated_bots/."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantlab.hub.slug import BOTS_DIR, MAX_SLUG, reserve_path, slugify, strategy_path

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
FILE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*_20260102-030405(-\d+)?\.py$")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("SMA cross 10/50", "sma-cross-10-50"),
        ("../../etc/passwd", "etc-passwd"),
        ("/etc/passwd", "etc-passwd"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("..", "strategy"),
        ("", "strategy"),
        ("   ", "strategy"),
        ("a\x00b", "a-b"),
        ("日本語", "strategy"),
        ("Café Crème", "cafe-creme"),
        ("CON", "strategy-con"),
        ("nul", "strategy-nul"),
        ("com1", "strategy-com1"),
        ("LPT9", "strategy-lpt9"),
        ("console", "console"),
        ("a___b--c", "a-b-c"),
        ("__init__", "init"),
        (None, "strategy"),
    ],
)
def test_slug_cases(name, slug):
    assert slugify(name) == slug


def test_long_names_are_cut_and_stay_distinct():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    sa, sb = slugify(a), slugify(b)
    assert len(sa) <= MAX_SLUG and len(sb) <= MAX_SLUG and sa != sb
    assert slugify(a) == sa  # deterministic


def test_reserve_path_never_overwrites(tmp_path):
    paths = [reserve_path(tmp_path, "same", WHEN) for _ in range(3)]
    assert [p.name for p in paths] == ["same_20260102-030405.py", "same_20260102-030405-2.py", "same_20260102-030405-3.py"]
    assert all(p.parent == (tmp_path / BOTS_DIR).resolve() for p in paths)
    (tmp_path / BOTS_DIR / "other_20260102-030405.json").write_text("{}")  # a stray sibling blocks the name too
    assert reserve_path(tmp_path, "other", WHEN).name == "other_20260102-030405-2.py"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=400), n=st.integers(min_value=1, max_value=50))
def test_no_generated_path_escapes(tmp_path, name, n):
    root = tmp_path / "hub"
    bots = (root / BOTS_DIR).resolve()
    path = strategy_path(root, name, WHEN, n)
    assert path.parent == bots
    assert path.resolve().is_relative_to(bots)
    assert FILE_RE.match(path.name), path.name
    assert len(path.name) <= MAX_SLUG + 30
    stem = path.name.split("_")[0].split(".")[0].upper()
    assert stem not in {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=80), st.sampled_from(["../x", "/abs/x", "..\\..\\x", "a/../../b", "\x00", "CON"])))
def test_reserved_files_are_created_inside(tmp_path, name):
    p = reserve_path(tmp_path, name, WHEN)
    assert p.exists() and p.parent == (tmp_path / BOTS_DIR).resolve()
    p.unlink()
