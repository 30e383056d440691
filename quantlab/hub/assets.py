"""The Git assets hub: strategies, their backtest metrics and the deployments ledger, in Git.

:class:`AssetsHub` stores and reads; its Git plumbing (lock, commits, retries) is
:mod:`quantlab.hub.gitrepo`, the deployments ledger and trial counts :mod:`quantlab.hub.deployments`,
the records it returns :mod:`quantlab.hub.records`; the commit message, file names, the secret guard
and the ledger format have their own modules. (Size: what is left, ~600 lines, is the hub's public
face, storing and reading over one record cache, most of it docstrings with examples.)

Layout of a hub (a normal Git repository with a working tree)::

    assets-hub/
      README.md                                   # initial commit
      deployments.jsonl                           # the deployments ledger (one JSON event per line)
      generated_bots/
        sma-cross_20261124-214337.py              # the strategy code, byte for byte
        sma-cross_20261124-214337.json            # its metadata (see AssetsHub.store)

Each :meth:`AssetsHub.store` is one commit holding exactly the two new files,
with the metrics in the commit message (see :mod:`quantlab.hub.message`) and
the run id and code hash as Git trailers. Each :meth:`AssetsHub.record_deployment`
is one commit appending one line to ``deployments.jsonl``.

Safety rules the hub keeps:

* only its own paths are committed (``git commit --only -- <paths>``): other
  modified or staged files in the working tree stay exactly as they were;
* code that does not define ``signals`` or that carries an obvious secret
  (:mod:`quantlab.hub.secrets`) is refused before anything is written;
* a detached HEAD is refused with the command to fix it;
* when another process holds ``.git/index.lock`` the hub retries with backoff
  for ``lock_timeout`` seconds, then raises :class:`IndexLockError` naming the file;
* commits skip the repository's hooks (``--no-verify``): a formatter hook must not
  change stored code after its SHA-256 was recorded;
* a store that cannot commit removes the files it wrote and unstages them, so a
  retry starts clean; a commit, once made, is never undone by a later step
  (pushing, deploying, recording).

Example
-------
>>> from quantlab.hub import AssetsHub
>>> hub = AssetsHub("/tmp/my-hub")                          # doctest: +SKIP
>>> stored = hub.store(strategy, result, source="notebook cell")   # doctest: +SKIP
>>> hub.strategies()[["name", "commit", "sharpe"]]            # doctest: +SKIP
"""
from __future__ import annotations

import difflib
import html
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from quantlab._util import decode_number, to_jsonable
from quantlab.engine.strategy import Strategy

from .deployments import DeploymentLedger, TrialCounts
from .errors import DetachedHeadError, HubError, IndexLockError, SecretsFoundError  # noqa: F401 - re-exported
from .gitrepo import HubRepo, init_repo, parse_author, utc_now
from .ledger import events_frame, latest_rows, latest_status
from .message import commit_message, context_trailers, one_line
from .records import CodeDiff, StoredStrategy, canonical_json, normalize_source, result_fields, split_result
from .secrets import refuse_secrets, secrets_in_store
from .slug import BOTS_DIR, reserve_path, slugify, strategy_path

if TYPE_CHECKING:  # pandas loads with the first table (deploying, listing and stopping from the shell need none)
    import pandas as pd

__all__ = [
    "AssetsHub",
    "StoredStrategy",
    "CodeDiff",
    "HubError",
    "DetachedHeadError",
    "IndexLockError",
    "SecretsFoundError",
]

# --------------------------------------------------------------------------- the hub
class AssetsHub:
    """A Git repository of strategies, their backtest metrics and their deployments.

    Parameters
    ----------
    path : the hub folder; ``git init`` (branch ``main``, first commit = a README)
        when it is not a repository yet, an existing repository is used as is.
    remote : URL or path of a (bare) remote, configured as ``remote_name``;
        :meth:`push` sends the current branch there.
    author : ``"Name <email>"``, a ``(name, email)`` tuple or a ``git.Actor`` used
        as author and committer; by default the repository's ``user.name`` /
        ``user.email``, else ``quantlab <quantlab@localhost>``.
    lock_timeout : seconds to keep retrying while another process holds the index lock.
    create : ``False`` to raise instead of creating a missing hub (the CLI does that).

    Example
    -------
    >>> hub = AssetsHub("/tmp/doc-hub")                 # doctest: +SKIP
    >>> hub                                             # doctest: +SKIP
    AssetsHub('/tmp/doc-hub', branch='main', strategies=0, head=1a2b3c4d5e6f)
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "./assets-hub",
        remote: str | None = None,
        author: Any = None,
        *,
        lock_timeout: float = 5.0,
        create: bool = True,
        remote_name: str = "origin",
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self.remote_name = remote_name
        self._cache: tuple[str, list[dict[str, Any]]] | None = None
        self._clock: Callable[[], datetime] = utc_now  # UTC, whole seconds; names the files and stamps "Generated"
        created = False
        try:
            repo = git.Repo(self.path)
        except (InvalidGitRepositoryError, NoSuchPathError):
            if not create:
                raise HubError(
                    f"no assets hub at {self.path} (not a Git repository); "
                    "create one with AssetsHub(path) or pass the right --hub PATH."
                ) from None
            if self.path.exists() and not self.path.is_dir():
                raise HubError(f"{self.path} is a file; give a folder for the assets hub.") from None
            repo, created = init_repo(self.path)
        if repo.bare:
            raise HubError(f"{self.path} is a bare repository; the hub needs a working tree: clone it and open the clone.")
        self.repo = repo
        self.path = Path(repo.working_tree_dir).resolve()
        #: the Git plumbing every write goes through (lock, commits of the hub's own paths, retries)
        self.git = HubRepo(repo, self.path, lock_timeout)
        self._ledger = DeploymentLedger(self.git)
        self._trials = TrialCounts(self.git)
        self.git.set_identity(parse_author(author))
        if remote is not None:
            self.git.set_remote(remote_name, str(remote))
        if created:
            with self.git.exclusive():  # two processes may create one hub at once: one first commit
                if self.git.head() is None:
                    self.git.initial_commit()

    @property
    def lock_timeout(self) -> float:
        """Seconds to keep retrying while another process holds the Git index lock."""
        return self.git.lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, value: float) -> None:
        self.git.lock_timeout = float(value)

    @property
    def author(self) -> tuple[str, str]:
        """``(name, email)`` of the hub's commits."""
        return self.git.author

    @property
    def branch(self) -> str | None:
        """The checked-out branch, or ``None`` on a detached HEAD."""
        return self.git.branch

    @property
    def quantlab_dir(self) -> Path:
        """``<git dir>/quantlab``: private files of this hub (e.g. the Lab's state), outside
        the working tree so they are never committed. Created on first use."""
        return self.git.quantlab_dir

    # -- storing -------------------------------------------------------------------
    def _prepare(self, strategy: Any, result: Any, source: Any, when: datetime) -> tuple[Strategy, dict[str, Any], str]:
        strategy, result = split_result(strategy, result)
        fields = result_fields(result)
        strategy = Strategy.coerce(strategy, fields["name"])
        from quantlab import __version__

        created_at = when.isoformat(timespec="seconds")
        run_id = fields["run_id"]
        metadata = to_jsonable({
            "name": strategy.name,
            "file": None,
            "params": fields["params"] if fields["params"] is not None else strategy.params,
            "default_params": strategy.params,
            "metrics": fields["metrics"],
            "data_ref": fields["data_ref"],
            "costs": fields["costs"],
            "bar_seconds": fields["bar_seconds"],
            "run_id": run_id,
            "code_sha256": strategy.sha256,
            "quantlab_version": __version__,
            "source": normalize_source(source),
            "created_at": created_at,
        })
        params = fields["params"] if fields["params"] is not None else strategy.params
        context = context_trailers(params, fields["data_ref"], fields["bar_seconds"], fields["costs"]) if result is not None else ""
        message = commit_message(strategy.name, fields["metrics"], created_at, "" if run_id is None else str(run_id),
                                 strategy.sha256, context=context)
        return strategy, metadata, message

    def preview(self, strategy: Any, result: Any = None, source: Any = None) -> dict[str, Any]:
        """What :meth:`store` would write, without writing anything.

        Returns ``dict(name=<strategy name>, path=<relative .py path>, message=<commit
        message>, metadata=<the .json content>, secrets=[<findings as text>])``. The
        timestamp (and so the path) is the current second; a real store a few
        seconds later gets its own.

        >>> hub.preview(strategy, result)["message"].splitlines()[0]    # doctest: +SKIP
        'Strategy: SMA cross'
        """
        when = self._clock()
        strategy, metadata, message = self._prepare(strategy, result, source, when)
        path = strategy_path(self.path, strategy.name, when)
        n = 1
        while path.exists() or path.with_suffix(".json").exists():
            n += 1
            path = strategy_path(self.path, strategy.name, when, n)
        rel = path.relative_to(self.path).as_posix()
        metadata["file"] = rel
        return {"name": strategy.name, "path": rel, "message": message, "metadata": metadata,
                "secrets": [str(f) for f in secrets_in_store(strategy.code, strategy.name, metadata, message)]}

    def store(self, strategy: Any, result: Any = None, source: Any = None, allow_secrets: bool = False, *,
              trailers: Mapping[str, Any] | None = None, attachments: Mapping[str, bytes] | None = None,
              extra_metadata: Mapping[str, Any] | None = None) -> StoredStrategy:
        """Store ``strategy`` with its backtest ``result`` as one commit; return the record.

        ``strategy`` is a :class:`~quantlab.engine.strategy.Strategy` (or its
        source code; the name then comes from ``result.name``); ``hub.store(result)``
        alone uses ``result.strategy``. ``result`` is a
        ``BacktestResult`` (its ``metrics``, ``params``, ``run_id``, ``data_ref``,
        ``costs`` are recorded). ``source`` says who or what wrote the code:
        ``"hand-written"`` (default), ``"notebook cell"``, or a dict such as
        ``{"type": "generator", "generator": "my-agent", "model": "..."}``.
        ``trailers`` (``{"Quantlab-Model": "..."}``) are appended to the commit message's
        trailer block; ``attachments`` (``{".transcript.jsonl": b"..."}``) are files written
        beside the strategy (``<name>_<ts><suffix>``) in the same commit; ``extra_metadata``
        is merged into the ``.json``.

        Raises :class:`StrategyError` for code without ``signals``,
        :class:`SecretsFoundError` for code with an obvious secret (unless
        ``allow_secrets=True``), :class:`DetachedHeadError`, :class:`IndexLockError`.

        >>> stored = hub.store(strategy, result, source="notebook cell")   # doctest: +SKIP
        >>> stored.path.name                                               # doctest: +SKIP
        'sma-cross_20261124-214337.py'
        """
        when = self._clock()
        strategy, metadata, message = self._prepare(strategy, result, source, when)
        if trailers:
            message += "".join(f"{one_line(k)}: {one_line(v)}\n" for k, v in trailers.items())
        if extra_metadata:
            metadata.update(to_jsonable(dict(extra_metadata)))
        if not allow_secrets:
            refuse_secrets(strategy.code, strategy.name, metadata, message)
        with self.git.exclusive():
            self.git.check_branch()
            py = reserve_path(self.path, strategy.name, when)
            js = py.with_suffix(".json")
            extra = {py.with_suffix(suffix): content for suffix, content in (attachments or {}).items()}
            metadata["file"] = py.relative_to(self.path).as_posix()
            for path in extra:
                metadata.setdefault("attachments", []).append(path.relative_to(self.path).as_posix())

            def rollback() -> None:
                for p in (py, js, *extra):
                    try:
                        p.unlink()
                    except FileNotFoundError:
                        pass

            try:
                py.write_bytes(strategy.code.encode("utf-8"))
                js.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                for path, content in extra.items():
                    path.write_bytes(content)
            except BaseException:
                rollback()
                raise
            sha = self.git.commit_paths([py, js, *extra], message, rollback=rollback)
        return StoredStrategy(name=strategy.name, path=py, commit=sha, sha256=strategy.sha256, metadata=metadata)

    # -- reading -------------------------------------------------------------------
    def _records(self) -> list[dict[str, Any]]:
        """Every stored strategy in HEAD, newest first: dicts with file, commit, date, metadata."""
        with self.git.lock:  # GitPython's cat-file helper process is not thread-safe
            return self._read_records()

    def _read_records(self) -> list[dict[str, Any]]:
        head = self.git.head()
        if head is None:
            return []
        if self._cache is not None and self._cache[0] == head:
            return self._cache[1]
        out = self.repo.git.log(
            "--no-renames", "--diff-filter=A", "--name-only", "--format=%x00%H%x09%cI", "--", f"{BOTS_DIR}/"
        )
        added: dict[str, tuple[str, str]] = {}
        for chunk in out.split("\x00"):
            lines = [ln for ln in chunk.splitlines() if ln.strip()]
            if not lines:
                continue
            sha, _, date = lines[0].partition("\t")
            for f in lines[1:]:
                if f.endswith(".py"):
                    added.setdefault(f, (sha, date))
        present = set(self.repo.git.ls_tree("-r", "--name-only", "-z", head, "--", f"{BOTS_DIR}/").split("\x00"))
        files = [f for f in added if f in present and "\n" not in f]
        metas = self.git.read_blobs([f"{head}:{f[:-3]}.json" for f in files])
        records = []
        for f, raw in zip(files, metas):
            sha, date = added[f]
            try:
                meta = json.loads(raw.decode("utf-8")) if raw is not None else {}
            except ValueError:
                meta = {}
            if not isinstance(meta, dict):
                meta = {}
            name = meta.get("name") or Path(f).stem.rsplit("_", 1)[0]
            records.append({"name": name, "file": f, "commit": sha, "date": date, "metadata": meta})
        # `git log` order: newest first, a child always before its parent
        self._cache = (head, records)
        return records

    def _stored(self, rec: Mapping[str, Any]) -> StoredStrategy:
        meta = dict(rec["metadata"])
        meta.setdefault("file", rec["file"])
        return StoredStrategy(
            name=rec["name"], path=self.path / rec["file"], commit=rec["commit"],
            sha256=str(meta.get("code_sha256") or ""), metadata=meta,
        )

    def strategies(self) -> pd.DataFrame:
        """All stored strategies, newest first: ``name, file, commit, date, sharpe,
        max_drawdown, profit_factor``, the other metrics, then ``run_id,
        code_sha256, params, source``.

        >>> hub.strategies()[["name", "sharpe"]]   # doctest: +SKIP
        """
        import pandas as pd

        rows = []
        metric_keys: dict[str, None] = dict.fromkeys(["sharpe", "max_drawdown", "profit_factor"])
        for rec in self._records():
            meta = rec["metadata"]
            metrics = {k: decode_number(v) for k, v in (meta.get("metrics") or {}).items()}
            metric_keys.update(dict.fromkeys(k for k, v in metrics.items() if not isinstance(v, (dict, list))))
            src = meta.get("source") or {}
            rows.append({
                "name": rec["name"], "file": rec["file"], "commit": rec["commit"], "date": rec["date"], **metrics,
                "run_id": meta.get("run_id"), "code_sha256": meta.get("code_sha256"),
                "params": meta.get("params"), "source": src.get("type") if isinstance(src, dict) else src,
            })
        columns = ["name", "file", "commit", "date", *metric_keys, "run_id", "code_sha256", "params", "source"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["date"] = pd.to_datetime(frame["date"], utc=True, format="ISO8601")
        for k in metric_keys:
            frame[k] = pd.to_numeric(frame[k], errors="coerce") if k in ("sharpe", "max_drawdown", "profit_factor") else frame[k]
        return frame

    def _matching(self, name: str) -> list[dict[str, Any]]:
        recs = self._records()
        exact = [r for r in recs if r["name"] == name]
        if exact:
            return exact
        slug = slugify(name)
        return [r for r in recs if slugify(r["name"]) == slug]

    def _unknown(self, what: str) -> HubError:
        names = sorted({r["name"] for r in self._records()})
        close = difflib.get_close_matches(what, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else (
            f" Stored names: {', '.join(map(repr, names[:10]))}{'…' if len(names) > 10 else ''}." if names else
            " The hub has no strategies yet; store one with hub.store(strategy, result).")
        return HubError(f"no stored strategy matches {what!r} (a name, a commit or a file in {BOTS_DIR}/).{hint}")

    def history(self, name: str) -> pd.DataFrame:
        """Every stored version of the strategy called ``name`` (newest first), like :meth:`strategies`.

        >>> hub.history("SMA cross")[["commit", "date", "sharpe"]]   # doctest: +SKIP
        """
        recs = self._matching(name)
        if not recs:
            raise self._unknown(name)
        frame = self.strategies()
        return frame[frame["file"].isin({r["file"] for r in recs})].reset_index(drop=True)

    def get(self, ref: Any) -> StoredStrategy:
        """The stored strategy for ``ref``: a name (latest version), a commit (full or
        short sha, or any revision such as ``HEAD~1``), a file path, or a
        :class:`StoredStrategy`.

        >>> hub.get("SMA cross").commit   # doctest: +SKIP
        """
        recs = self._records()
        if isinstance(ref, StoredStrategy):
            for r in recs:
                if r["file"] == ref.file:
                    return self._stored(r)
            raise self._unknown(ref.file)
        text = str(ref).strip()
        by_name = self._matching(text)
        if by_name:
            return self._stored(by_name[0])
        candidate = text
        if os.path.isabs(candidate):
            try:
                candidate = Path(candidate).resolve().relative_to(self.path).as_posix()
            except ValueError:
                pass
        candidate = candidate.replace("\\", "/")
        if candidate.endswith(".json"):
            candidate = candidate[:-5] + ".py"
        for c in (candidate, f"{BOTS_DIR}/{candidate}", f"{BOTS_DIR}/{candidate}.py"):
            for r in recs:
                if r["file"] == c:
                    return self._stored(r)
        if re.fullmatch(r"[0-9A-Za-z_./~^@{}-]+", text):
            try:
                sha = self.repo.rev_parse(text).hexsha
            except Exception:  # noqa: BLE001 - gitdb raises several types for bad revisions
                sha = None
            if sha is not None:
                hits = [r for r in recs if r["commit"] == sha]
                if hits:
                    return self._stored(hits[0])
                raise HubError(f"commit {sha[:12]} ({text!r}) did not store a strategy (it may be a deployment record).")
        raise self._unknown(text)

    def _code_at(self, stored: StoredStrategy) -> str:
        blob = self.repo.commit(stored.commit).tree / stored.file
        return blob.data_stream.read().decode("utf-8")

    def code(self, ref: Any) -> str:
        """The source code stored under ``ref``, as committed (read, not executed).

        >>> print(hub.code("SMA cross"))   # doctest: +SKIP
        """
        return self._code_at(self.get(ref))

    def load(self, ref: Any) -> Strategy:
        """The :class:`Strategy` stored under ``ref`` (a name -> its latest version, a commit, a path).

        The code is read from Git (as committed), not from the working tree.

        >>> hub.load("SMA cross").params   # doctest: +SKIP
        {'fast': 10, 'slow': 50}
        """
        stored = self.get(ref)
        return Strategy.from_code(self._code_at(stored), name=stored.name)

    def diff(self, a: Any, b: Any, context: int = 3) -> CodeDiff:
        """Unified diff of the code of two stored versions (each a name, commit or path).

        >>> print(hub.diff(old_commit, "SMA cross"))   # doctest: +SKIP
        """
        sa, sb = self.get(a), self.get(b)
        lines = difflib.unified_diff(
            self._code_at(sa).splitlines(keepends=True), self._code_at(sb).splitlines(keepends=True),
            fromfile=f"{sa.file}@{sa.commit[:12]}", tofile=f"{sb.file}@{sb.commit[:12]}", n=context,
        )
        return CodeDiff("".join(line if line.endswith("\n") else line + "\n" for line in lines))

    def find(self, code_sha256: str, params: Mapping[str, Any] | None = None) -> StoredStrategy | None:
        """The newest stored strategy with this code hash and (if given) these params, else ``None``.

        The Lab uses it so the same code and parameters are never stored twice.

        >>> hub.find(strategy.sha256, result.params)   # doctest: +SKIP
        """
        wanted = None if params is None else canonical_json(params)
        for r in self._records():
            meta = r["metadata"]
            if meta.get("code_sha256") != code_sha256:
                continue
            if wanted is None or canonical_json(meta.get("params") or {}) == wanted:
                return self._stored(r)
        return None

    def log(self, max_count: int = 20) -> pd.DataFrame:
        """The hub's recent commits (newest first): ``commit, date, author, kind, subject``,
        where ``kind`` is ``strategy``, ``deployment`` or ``other``."""
        import pandas as pd

        if self.git.head() is None:
            return pd.DataFrame(columns=["commit", "date", "author", "kind", "subject"])
        rows = []
        for c in self.repo.iter_commits(max_count=max_count):
            subject = c.message.splitlines()[0] if c.message else ""
            kind = "strategy" if subject.startswith("Strategy: ") else "deployment" if subject.startswith("Deployment ") else "other"
            rows.append({"commit": c.hexsha, "date": c.committed_datetime, "author": c.author.name, "kind": kind, "subject": subject})
        frame = pd.DataFrame(rows, columns=["commit", "date", "author", "kind", "subject"])
        frame["date"] = pd.to_datetime(frame["date"], utc=True)
        return frame

    # -- deployments ledger and trials (quantlab.hub.deployments) -------------------------
    @property
    def ledger_path(self) -> Path:
        """``<hub>/deployments.jsonl``, or ``<hub>/.quantlab/deployments-ledger.jsonl`` when the repository
        git-ignores a ``deployments.jsonl`` of its own (the hub never force-commits an ignored file:
        it says so once, with a :class:`UserWarning`, and keeps its ledger beside)."""
        return self._ledger.path

    def record_deployment(self, event: Mapping[str, Any]) -> str:
        """Append one deployment event to ``deployments.jsonl`` and commit it; return the commit sha.

        See :mod:`quantlab.hub.ledger` for the fields (``strategy_name`` and
        ``status`` are required). If the commit fails (say, the index stays
        locked), the line stays in the file, so the event is not lost: it is
        committed with the next event, and :meth:`deployments` already shows it.

        >>> hub.record_deployment({"strategy_name": "SMA", "status": "running", "commit": stored.commit,
        ...                        "broker": "broker", "broker_deployment_id": "dep-1"})   # doctest: +SKIP
        """
        return self._ledger.record(event)

    def deployments(self, commit: str | None = None) -> pd.DataFrame:
        """Every deployment event in the ledger, oldest first (columns: :data:`quantlab.hub.ledger.FIELDS`
        + extras); ``commit`` (full or a prefix) keeps the events of one stored strategy.

        >>> hub.deployments()[["strategy_name", "status", "triggered_at"]]   # doctest: +SKIP
        """
        return events_frame(self._ledger.events(commit))

    def deployment_status(self, commit: str | None = None) -> pd.DataFrame:
        """The latest status of each deployment (key: strategy commit + broker deployment id;
        see :mod:`quantlab.hub.ledger`), optionally only for one strategy ``commit``.

        >>> hub.deployment_status(stored.commit)["status"].tolist()   # doctest: +SKIP
        ['running']
        """
        return latest_status(self._ledger.events(commit))

    def deployment_rows(self, commit: str | None = None) -> list[dict[str, Any]]:
        """The rows of :meth:`deployment_status` as plain dicts, oldest first (times as ISO text):
        for code that needs no table (the command line lists and stops deployments without pandas).

        >>> [r["status"] for r in hub.deployment_rows(stored.commit)]   # doctest: +SKIP
        ['running']
        """
        return latest_rows(self._ledger.events(commit))

    @property
    def trials_path(self) -> Path:
        """``<git dir>/quantlab/trials.json``: trial counts per strategy family (private to this clone)."""
        return self._trials.path

    def trials(self, name: Any) -> int:
        """How many variants of the strategy family ``name`` were tried: every backtest, sweep
        combination and generated candidate a :class:`~quantlab.Lab` ran under that name
        (names are compared by their slug: ``"SMA cross"`` and ``"sma-cross"`` are one family).

        The deflated Sharpe ratio of a stored strategy is computed against this count.

        >>> hub.record_trials("SMA cross", 12); hub.trials("sma-cross")   # doctest: +SKIP
        12
        """
        return self._trials.get(name)

    def record_trials(self, name: Any, n: int = 1) -> int:
        """Add ``n`` trials to the family ``name``; return its new count. Safe across processes
        (under the hub's write lock, written atomically)."""
        return self._trials.add(name, n)

    # -- remote --------------------------------------------------------------------------
    def push(self) -> str:
        """Push the current branch to the configured remote; return the pushed branch name.

        A failed push raises :class:`HubError`; the local commits are kept, push again later.
        """
        self.git.check_branch()
        if self.remote_name not in [r.name for r in self.repo.remotes]:
            raise HubError(f"the hub has no remote {self.remote_name!r}; open it with AssetsHub(path, remote=URL).")
        branch = self.branch
        try:
            self.repo.git.push("--porcelain", self.remote_name, f"HEAD:refs/heads/{branch}")
        except GitCommandError as exc:
            raise HubError(
                f"push of {branch!r} to {self.remote_name} failed (the local commits are kept; push again later): "
                f"{str(exc.stderr or exc).strip()}"
            ) from exc
        return str(branch)

    # -- lifecycle / display -----------------------------------------------------------------
    def close(self) -> None:
        """Stop the git helper processes GitPython keeps open."""
        self.repo.close()

    def __enter__(self) -> "AssetsHub":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        head = self.git.head()
        return (
            f"AssetsHub({str(self.path)!r}, branch={self.branch!r}, strategies={len(self._records())}, "
            f"head={head[:12] if head else None})"
        )

    def _repr_html_(self) -> str:
        frame = self.strategies()
        head = self.git.head()
        table = frame[["name", "commit", "date", "sharpe", "max_drawdown", "profit_factor"]].head(10).assign(
            commit=lambda f: f["commit"].str[:12]
        ).to_html(index=False) if len(frame) else "<i>no strategies stored yet</i>"
        return (
            f"<div><b>AssetsHub</b> <code>{html.escape(str(self.path))}</code> "
            f"branch <code>{html.escape(str(self.branch))}</code> head <code>{head[:12] if head else '—'}</code>, "
            f"{len(frame)} strateg{'y' if len(frame) == 1 else 'ies'}{table}</div>"
        )
