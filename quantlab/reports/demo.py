"""``quantlab demo``: the quickstart notebook headless into a folder, with its own assets hub."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from quantlab._util import html as qh

from .notebooks import QUICKSTART, execute, notebook_path

__all__ = ["DemoOutcome", "run_demo"]


@dataclass
class DemoOutcome:
    """Where ``quantlab demo`` put things: the executed ``notebook``, its ``html``, the ``hub``,
    the stored ``commit`` and the ``deployment`` (id and status from the hub's ledger)."""

    notebook: Path
    html: Path
    hub: Path
    commit: str | None
    strategy: str | None
    deployment_id: str | None
    deployment_status: str | None
    seconds: float

    def _rows(self) -> list[tuple[str, str]]:
        dep = f"{self.deployment_id} ({self.deployment_status})" if self.deployment_id else "none"
        return [("executed notebook", str(self.notebook)), ("HTML report", str(self.html)),
                ("assets hub", f"{self.hub} (strategy {self.strategy!r}, commit {(self.commit or 'none')[:12]})"),
                ("deployment", dep), ("took", f"{self.seconds:.1f} s")]

    def __repr__(self) -> str:
        dep = f"{self.deployment_id} ({self.deployment_status})" if self.deployment_id else None
        return f"DemoOutcome(notebook={str(self.notebook)!r}, hub={str(self.hub)!r}, deployment={dep!r})"

    def _repr_html_(self) -> str:
        return qh.kv_table((k, qh.raw(f"<code>{qh.escape(v)}</code>")) for k, v in self._rows())

    def __str__(self) -> str:
        dep = f"{self.deployment_id} ({self.deployment_status})" if self.deployment_id else "none"
        commit = (self.commit or "none")[:12]
        return "\n".join([
            f"executed notebook  {self.notebook}",
            f"HTML report        {self.html}",
            f"assets hub         {self.hub}  (strategy {self.strategy!r}, commit {commit})",
            f"deployment         {dep}  (ledger: {self.hub / 'deployments.jsonl'})",
            f"took               {self.seconds:.1f} s",
        ])


def run_demo(out: str | os.PathLike[str] = "./quantlab-demo", *, progress: bool = False, timeout: float = 300) -> DemoOutcome:
    """Run ``01_quickstart`` headless into ``out`` (with its assets hub at ``out/assets-hub``).

    >>> print(run_demo("/tmp/demo"))      # doctest: +SKIP
    """
    from quantlab.hub import AssetsHub

    t0 = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    hub = out / "assets-hub"
    nb = execute(notebook_path(QUICKSTART), out / QUICKSTART, {"hub": str(hub), "auto_deploy": True, "teardown": True},
                 cwd=out, progress=progress, timeout=timeout)
    store = AssetsHub(hub, create=False)
    try:
        log = store.strategies()
        status = store.deployment_status()
    finally:
        store.close()
    commit = strategy = dep_id = dep_status = None
    if len(log):
        commit, strategy = str(log.iloc[0]["commit"]), str(log.iloc[0]["name"])
    if len(status):
        last = status.iloc[-1]
        dep_id, dep_status = str(last.get("broker_deployment_id")), str(last.get("status"))
    return DemoOutcome(nb, nb.with_suffix(".html"), hub, commit, strategy, dep_id, dep_status, time.perf_counter() - t0)

