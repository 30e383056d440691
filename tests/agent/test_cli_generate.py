"""`quantlab generate --model offline` as a user runs it: a real subprocess, real servers, a real hub."""
from __future__ import annotations

import json
import subprocess
import sys


def ql(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generate_offline_json_store_then_replay(tmp_path):
    proc = ql("generate", "trend following, long only", "--model", "offline", "--attempts", "4", "--store", "--json",
              "--save", "gen.json", "--hub", "hub", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["stop_reason"] == "passed" and "no LLM" in out["model"] and out["best"] > 1
    assert out["stored"]["file"].startswith("generated_bots/")
    assert (tmp_path / "hub" / out["stored"]["file"]).with_suffix(".transcript.jsonl").is_file()
    assert "attempt 1: failed: policy (sharpe:" in proc.stderr            # progress on stderr, JSON on stdout
    # the recorded first attempt failed the policy: replaying one attempt stores nothing and exits 2
    again = ql("generate", "trend following, long only", "--model", "replay:gen.json", "--attempts", "1", "--store",
               "--hub", "hub", cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert again.stdout.startswith("Generation('trend following, long only', model='replay:gen.json")
    assert "not stored: no attempt passed every check" in again.stdout
