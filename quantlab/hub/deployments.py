"""The deployments ledger and the trial counts of an assets hub, both written under the hub's lock.

* :class:`DeploymentLedger`: ``deployments.jsonl`` in the hub (one JSON event per line, one commit per
  event; the format is :mod:`quantlab.hub.ledger`);
* :class:`TrialCounts`: ``<git dir>/quantlab/trials.json``, how many variants of each strategy family
  were tried (for the deflated Sharpe ratio; private to the clone, never committed).

:class:`~quantlab.hub.assets.AssetsHub` exposes both (``record_deployment``, ``deployments``,
``deployment_status``, ``trials``, ``record_trials``).

Example
-------
>>> import tempfile, git
>>> path = Path(tempfile.mkdtemp())
>>> repo = HubRepo(git.Repo.init(path, initial_branch="main"), path)
>>> repo.set_identity(None); repo.initial_commit()
>>> counts = TrialCounts(repo)
>>> counts.add("SMA cross", 3), counts.get("sma-cross")
(3, 3)
>>> ledger = DeploymentLedger(repo)
>>> len(ledger.record({"strategy_name": "SMA", "status": "running"})) >= 40
True
>>> [e["status"] for e in ledger.events(None)]
['running']
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from git.exc import GitCommandError

from quantlab._util import atomic_write_text

from .errors import HubError
from .gitrepo import HubRepo
from .ledger import LEDGER_FILE, ledger_message, normalize_event, read_events
from .slug import slugify

__all__ = ["DeploymentLedger", "TrialCounts"]


class DeploymentLedger:
    """The hub's deployments ledger: append one event per commit, read them back under the lock."""

    def __init__(self, repo: HubRepo) -> None:
        self.repo = repo
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        """``<hub>/deployments.jsonl``, or ``<hub>/.quantlab/deployments-ledger.jsonl`` when the repository
        git-ignores a ``deployments.jsonl`` of its own (see :attr:`AssetsHub.ledger_path`)."""
        if self._path is None:
            self._path = self._find()
        return self._path

    def _find(self) -> Path:
        main = self.repo.path / LEDGER_FILE
        aside = self.repo.path / ".quantlab" / "deployments-ledger.jsonl"  # a name the ignored file's pattern does not match
        for candidate in (main, aside):
            rel = candidate.relative_to(self.repo.path).as_posix()
            if self.repo.repo.git.ls_files("--", rel).strip():  # tracked: it is the ledger, whatever .gitignore says now
                return candidate
        why = self._ignored_by(main)
        if why is None:
            return main
        if self._ignored_by(aside) is not None:
            raise HubError(
                f"{main} is git-ignored ({why}) and so is {aside}; the hub will not force-commit ignored files. "
                f"Un-ignore one of them (e.g. add '!/.quantlab/' to {self.repo.path / '.gitignore'})."
            )
        import warnings

        warnings.warn(
            f"quantlab: {main.name} is git-ignored in {self.repo.path} ({why}), so the hub does not commit it; "
            f"the deployments ledger is kept in {aside.relative_to(self.repo.path).as_posix()} instead.",
            UserWarning, stacklevel=5,
        )
        return aside

    def _ignored_by(self, path: Path) -> str | None:
        """``"<source>:<line>: <pattern>"`` when git ignores ``path``, else ``None``."""
        rel = path.relative_to(self.repo.path).as_posix()
        try:
            out = self.repo.repo.git.check_ignore("-v", "--no-index", "--", rel)
        except GitCommandError:  # exit status 1: not ignored
            return None
        source, _, pattern = out.partition("\t")[0].rpartition(":")
        return f"{source}: {pattern}" if out else None

    def record(self, event: Mapping[str, Any]) -> str:
        """Append ``event`` (normalised, :func:`~quantlab.hub.ledger.normalize_event`) and commit it; return the sha.

        If the commit fails, the line stays in the file and is committed with the next event.
        """
        e = normalize_event(event)
        line = json.dumps(e, ensure_ascii=False, separators=(", ", ": ")) + "\n"
        with self.repo.exclusive():
            self.repo.check_branch()
            path = self.path
            path.parent.mkdir(exist_ok=True)
            needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
            with open(path, "a", encoding="utf-8", newline="\n") as fh:
                fh.write(("\n" if needs_newline else "") + line)
            try:
                return self.repo.commit_paths([path], ledger_message(e))
            except HubError as exc:
                raise type(exc)(f"{exc}\nThe event was written to {path} and will be committed with the next event.") from exc

    def events(self, commit: str | None) -> list[dict[str, Any]]:
        """Every event, oldest first; ``commit`` (full or a prefix) keeps one stored strategy's."""
        with self.repo.exclusive():  # never read a line another process is half-way through appending
            events = read_events(self.path)
        if commit is not None:
            events = [e for e in events if str(e.get("commit") or "").startswith(str(commit))]
        return events


class TrialCounts:
    """Trial counts per strategy family (names compared by slug), in ``<git dir>/quantlab/trials.json``."""

    def __init__(self, repo: HubRepo) -> None:
        self.repo = repo

    @property
    def path(self) -> Path:
        """``<git dir>/quantlab/trials.json``."""
        return self.repo.quantlab_dir / "trials.json"

    def read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}          # a damaged file restarts the counts rather than blocking backtests
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}

    def get(self, name: Any) -> int:
        """The count of the family ``name`` (0 if none)."""
        return self.read().get(slugify(name), 0)

    def add(self, name: Any, n: int = 1) -> int:
        """Add ``n`` trials to the family ``name`` under the hub's lock (written atomically); return the new count."""
        n = int(n)
        if n < 0:
            raise ValueError(f"trials can only be added (n >= 0), got {n}.")
        key = slugify(name)
        with self.repo.exclusive():
            counts = self.read()
            counts[key] = counts.get(key, 0) + n
            atomic_write_text(self.path, json.dumps(counts, indent=1, sort_keys=True))
            return counts[key]
