"""quantlab._util.html: the one palette, badge, status colour map and table renderer."""
from __future__ import annotations

import re
from pathlib import Path

import quantlab
from quantlab._util import html as qh
from quantlab.hub import DEPLOYMENT_STATUSES
from quantlab.widgets import _render

ROOT = Path(quantlab.__file__).parent


def test_status_colours_cover_exactly_the_deployment_statuses():
    assert set(qh.STATUS_COLOURS) == set(DEPLOYMENT_STATUSES)
    # running and failed must not look alike; an unknown status falls back to the neutral colour
    assert qh.status_colour("running") != qh.status_colour("failed")
    assert qh.status_colour("no-such-status") == qh.GREY
    assert qh.status_colour("RUNNING") == qh.status_colour("running")


def test_widgets_use_the_same_palette_and_badge():
    assert _render.STATUS_COLOURS is qh.STATUS_COLOURS
    assert _render.badge is qh.badge
    assert _render.status_html("failed") == qh.status_html("failed")
    assert qh.status_colour("failed") in _render.status_html("failed")


def test_table_escapes_cells_unless_marked_raw():
    out = qh.table(["<col>", "n"], [["<script>", 3], [qh.raw("<i>ok</i>"), 4.5]], css_class="x")
    assert "&lt;script&gt;" in out and "<script>" not in out
    assert "&lt;col&gt;" in out
    assert "<i>ok</i>" in out
    assert out.count("<tr>") == 3 and "class='x'" in out
    # numbers right-aligned, text not
    assert re.search(r"text-align:right[^>]*>3<", out)
    kv = qh.kv_table([("status", qh.raw(qh.status_html("running"))), ("note", "a<b")])
    assert "quantlab-status" in kv and "a&lt;b" in kv


def test_badge_and_verdict():
    assert qh.badge(None) == "" and qh.badge(float("nan")) == ""
    assert qh.GREEN in qh.badge(True) and qh.RED in qh.badge(False)
    assert "policy passed" in qh.badge(True, "policy passed")
    assert qh.AMBER in qh.verdict(None, "ERROR") and "&lt;x&gt;" in qh.verdict(True, "<x>")


def test_no_layer_hard_codes_colours_or_its_own_table_renderer():
    """The reprs below the widgets take colours and tables from quantlab._util.html."""
    files = ["hub/assets.py", "lab/lab.py", "lab/policy.py", "lab/results.py", "reports/index.py", "client/_state.py"]
    for rel in files:
        text = (ROOT / rel).read_text()
        assert not re.findall(r"#[0-9a-fA-F]{6}\b", text), rel
    assert "<table" not in (ROOT / "client/_state.py").read_text().replace('"<table" in', "")
