"""The Git assets hub: strategies, their backtest metrics and the deployments ledger, in Git.

(Size: :class:`AssetsHub` is one class whose methods share one repository handle and its lock;
the commit message, file names, the secret guard and the ledger have their own modules.)

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

import contextlib
import difflib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from quantlab._util import html as qh

from quantlab.engine.strategy import Strategy, StrategyError

from . import ledger as _ledger
from quantlab._util import atomic_write_text, decode_number, to_jsonable

from .message import commit_message, context_trailers, format_drawdown, format_number, one_line
from .secrets import SecretFinding, find_secrets, find_secrets_in
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

T = TypeVar("T")
_DEFAULT_AUTHOR = ("quantlab", "quantlab@localhost")
_LOCK_RE = re.compile(r"Unable to create '([^']+\.lock)'")
_COMMIT_OUT_RE = re.compile(r"^\[.*? (?:\(root-commit\) )?([0-9a-f]{64}|[0-9a-f]{40})\] ")
_README = """# quantlab assets hub

Strategies stored by quantlab with their backtest results.

* `generated_bots/<name>_<YYYYmmdd-HHMMSS>.py`: the strategy code; the sibling `.json`
  holds its parameters, metrics, data reference, costs, code SHA-256 and source; a strategy the
  code agent wrote also has `<name>_<ts>.transcript.jsonl` (every message of its generation).
* `deployments.jsonl`: one line per deployment event (pending, running, failed, stopped).
* Every store and every deployment event is one commit: `git log` is the audit trail,
  `git log --format='%h %(trailers:key=Quantlab-Run,valueonly)'` lists run ids.
"""


class HubError(RuntimeError):
    """Something the assets hub could not do; the message says what to do about it."""


class DetachedHeadError(HubError):
    """The hub repository is on a detached HEAD, so there is no branch to commit to."""


class IndexLockError(HubError):
    """Another process held the Git index (or a ref) lock for longer than ``lock_timeout``."""


class SecretsFoundError(HubError, ValueError):
    """The strategy code carries something that looks like a secret (see ``.findings``)."""

    def __init__(self, message: str, findings: list[SecretFinding]):
        super().__init__(message)
        self.findings = findings


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class StoredStrategy:
    """A strategy stored in the hub: its ``name``, ``.py`` ``path`` (absolute, in the
    working tree), the ``commit`` that stored it, the code ``sha256`` and the
    ``metadata`` written next to it.

    >>> stored = hub.store(strategy, result)       # doctest: +SKIP
    >>> stored.commit[:7], stored.file             # doctest: +SKIP
    ('3f2a9c1', 'generated_bots/sma_20261124-214337.py')
    """

    name: str
    path: Path
    commit: str
    sha256: str
    metadata: dict[str, Any] = field(repr=False)

    @property
    def file(self) -> str:
        """The ``.py`` path relative to the hub root (POSIX)."""
        return str(self.metadata.get("file") or f"{BOTS_DIR}/{self.path.name}")

    @property
    def metadata_path(self) -> Path:
        """The sibling ``.json`` metadata file."""
        return self.path.with_suffix(".json")

    @property
    def metrics(self) -> dict[str, Any]:
        """The backtest metrics (``inf``/``nan`` restored as floats)."""
        return {k: decode_number(v) for k, v in (self.metadata.get("metrics") or {}).items()}

    @property
    def params(self) -> dict[str, Any]:
        """The parameters the backtest ran with."""
        return dict(self.metadata.get("params") or {})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``name, file, commit, sha256, metadata``."""
        return {"name": self.name, "file": self.file, "commit": self.commit, "sha256": self.sha256,
                "metadata": to_jsonable(self.metadata)}

    @property
    def short(self) -> str:
        """The first 12 hex digits of the commit."""
        return self.commit[:12]

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"StoredStrategy(name={self.name!r}, commit={self.short}, file={self.file!r}, "
            f"sharpe={format_number(m.get('sharpe'))}, max_drawdown={format_drawdown(m.get('max_drawdown'))}%, "
            f"profit_factor={format_number(m.get('profit_factor'))})"
        )

    def _repr_html_(self) -> str:
        m = self.metrics
        rows = [
            ("commit", f"<code>{self.short}</code>"),
            ("file", f"<code>{html.escape(self.file)}</code>"),
            ("Sharpe", format_number(m.get("sharpe"))),
            ("max drawdown", format_drawdown(m.get("max_drawdown")) + "%"),
            ("profit factor", format_number(m.get("profit_factor"))),
            ("params", html.escape(json.dumps(self.params))),
            ("run", html.escape(str(self.metadata.get("run_id")))),
            ("code sha256", f"<code>{self.sha256[:12]}…</code>"),
        ]
        table = qh.kv_table((k, qh.raw(v)) for k, v in rows)
        return f"<div><b>Stored strategy</b> <code>{html.escape(self.name)}</code>{table}</div>"


class CodeDiff(str):
    """A unified diff (a ``str``) that shows coloured in Jupyter.

    >>> print(hub.diff("SMA@v1", "SMA"))   # doctest: +SKIP
    """

    def _repr_html_(self) -> str:
        if not self:
            return "<pre><i>no difference</i></pre>"
        out = []
        for line in self.splitlines():
            color = ""
            if line.startswith(("+++", "---")):
                color = "font-weight:bold"
            elif line.startswith("+"):
                color = f"color:{qh.GREEN};background:{qh.GREEN_BG}"
            elif line.startswith("-"):
                color = f"color:{qh.RED};background:{qh.RED_BG}"
            elif line.startswith("@@"):
                color = f"color:{qh.PURPLE}"
            out.append(f"<span style='{color}'>{html.escape(line)}</span>")
        return "<pre>" + "\n".join(out) + "</pre>"


# --------------------------------------------------------------------------- helpers
def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _parse_author(author: Any) -> tuple[str, str] | None:
    if author is None:
        return None
    if isinstance(author, git.Actor):
        return author.name or _DEFAULT_AUTHOR[0], author.email or _DEFAULT_AUTHOR[1]
    if isinstance(author, (tuple, list)) and len(author) == 2:
        return str(author[0]), str(author[1])
    if isinstance(author, str):
        m = re.fullmatch(r"\s*(.*?)\s*<([^<>]+)>\s*", author)
        if m:
            return m.group(1) or _DEFAULT_AUTHOR[0], m.group(2)
        return author.strip() or _DEFAULT_AUTHOR[0], _DEFAULT_AUTHOR[1]
    raise TypeError(f"author must be 'Name <email>', a (name, email) tuple or a git.Actor, got {author!r}.")


def _result_fields(result: Any) -> dict[str, Any]:
    """Read what the hub needs from a BacktestResult (or a plain dict)."""
    if result is None:
        return {"metrics": {}, "params": None, "run_id": None, "data_ref": None, "costs": None, "name": None,
                "bar_seconds": None}
    if isinstance(result, Mapping):
        get = result.get
        metrics = result.get("metrics", result if "sharpe" in result else {})
    else:
        def get(key: str, default: Any = None) -> Any:
            return getattr(result, key, default)
        metrics = getattr(result, "metrics", {})
    size = None
    equity = get("equity")
    pd = sys.modules.get("pandas")  # no pandas loaded: equity cannot be a Series
    if pd is not None and isinstance(equity, pd.Series):
        from quantlab.engine.data import bar_size

        step = bar_size(equity.index)
        size = step.total_seconds() if step is not None else None
    return {
        "metrics": dict(metrics or {}),
        "params": get("params"),
        "run_id": get("run_id"),
        "data_ref": get("data_ref"),
        "costs": get("costs"),
        "name": get("name"),
        "bar_seconds": size if size is not None else get("bar_seconds"),
    }


def _split(strategy: Any, result: Any) -> tuple[Any, Any]:
    """``store(result)`` means ``store(result.strategy, result)`` for a BacktestResult."""
    if result is None and not isinstance(strategy, (Strategy, str)) and hasattr(strategy, "metrics"):
        inner = getattr(strategy, "strategy", None)
        if inner is None:
            raise TypeError("this backtest result carries no strategy; call hub.store(strategy, result).")
        return inner, strategy
    return strategy, result


def _normalize_source(source: Any) -> dict[str, Any]:
    if source is None:
        return {"type": "hand-written"}
    if isinstance(source, str):
        return {"type": source.strip() or "hand-written"}
    if isinstance(source, Mapping):
        out = dict(source)
        out.setdefault("type", "generator" if ("model" in out or "generator" in out) else "hand-written")
        return to_jsonable(out)
    raise TypeError(
        "source describes who wrote the code: 'hand-written', 'notebook cell', or a dict like "
        f"{{'type': 'generator', 'generator': 'claude-code', 'model': '...'}}; got {source!r}."
    )


def _canonical(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


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
        self.lock_timeout = float(lock_timeout)
        self.remote_name = remote_name
        self._lock = threading.RLock()
        self._flock_depth = 0
        self._ledger_path: Path | None = None
        self._cache: tuple[str, list[dict[str, Any]]] | None = None
        self._clock: Callable[[], datetime] = _now  # UTC, whole seconds; names the files and stamps "Generated"
        created = False
        try:
            self.repo = git.Repo(self.path)
        except (InvalidGitRepositoryError, NoSuchPathError):
            if not create:
                raise HubError(
                    f"no assets hub at {self.path} (not a Git repository); "
                    "create one with AssetsHub(path) or pass the right --hub PATH."
                ) from None
            if self.path.exists() and not self.path.is_dir():
                raise HubError(f"{self.path} is a file; give a folder for the assets hub.") from None
            self.path.mkdir(parents=True, exist_ok=True)
            self.repo = git.Repo.init(self.path, initial_branch="main")
            created = True
        if self.repo.bare:
            raise HubError(f"{self.path} is a bare repository; the hub needs a working tree: clone it and open the clone.")
        self.path = Path(self.repo.working_tree_dir).resolve()
        self._set_identity(_parse_author(author))
        if remote is not None:
            self._set_remote(str(remote))
        if created:
            with self._exclusive():  # two processes may create one hub at once: one first commit
                if self._head() is None:
                    self._initial_commit()

    # -- setup -----------------------------------------------------------------
    def _set_identity(self, author: tuple[str, str] | None) -> None:
        if author is None:
            reader = self.repo.config_reader()
            name = reader.get_value("user", "name", default="") or ""
            email = reader.get_value("user", "email", default="") or ""
            if name and email:
                self.author = (str(name), str(email))
                return
            author = (str(name) or _DEFAULT_AUTHOR[0], str(email) or _DEFAULT_AUTHOR[1])
        self.author = author
        self.repo.git.update_environment(
            GIT_AUTHOR_NAME=author[0], GIT_AUTHOR_EMAIL=author[1],
            GIT_COMMITTER_NAME=author[0], GIT_COMMITTER_EMAIL=author[1],
        )

    def _set_remote(self, url: str) -> None:
        names = [r.name for r in self.repo.remotes]
        if self.remote_name not in names:
            self.repo.create_remote(self.remote_name, url)
            return
        current = self.repo.remote(self.remote_name).url
        if current != url:
            raise HubError(
                f"the hub's remote {self.remote_name!r} already points to {current}, not {url}; "
                f"pass remote_name='other' or change it with `git -C {self.path} remote set-url {self.remote_name} {url}`."
            )

    def _initial_commit(self) -> None:
        readme = self.path / "README.md"
        if readme.exists() and self.repo.git.ls_files("--", "README.md").strip() == "" and readme.read_text(
                encoding="utf-8", errors="replace") == _README:
            readme.unlink()  # our own README from a creation that did not get to commit: write and commit it again
        if readme.exists():
            self._retry(lambda: self.repo.git.commit("--allow-empty", "--no-verify", "-q", "-m", "Create the quantlab assets hub"),
                        time.monotonic() + self.lock_timeout)
            return
        readme.write_text(_README, encoding="utf-8")
        self._commit_paths([readme], "Create the quantlab assets hub\n")

    # -- git plumbing --------------------------------------------------------------
    @property
    def branch(self) -> str | None:
        """The checked-out branch, or ``None`` on a detached HEAD."""
        try:
            return self.repo.active_branch.name
        except TypeError:
            return None

    @property
    def quantlab_dir(self) -> Path:
        """``<git dir>/quantlab``: private files of this hub (e.g. the Lab's state), outside
        the working tree so they are never committed. Created on first use."""
        d = Path(self.repo.git_dir) / "quantlab"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the hub's write lock: this object's threads and every other process writing to the hub.

        ``<git dir>/quantlab/hub.lock`` is ``flock``-ed around a whole write (reserve the file
        names, write, ``git add``, ``git commit``), so two kernels storing or recording at once
        queue instead of one committing the other's ledger line (which left the second with a
        spurious "nothing to commit"). Re-entrant within a thread.
        """
        with self._lock:
            if self._flock_depth:
                self._flock_depth += 1
                try:
                    yield
                finally:
                    self._flock_depth -= 1
                return
            fd = os.open(self.quantlab_dir / "hub.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    import fcntl
                except ImportError:  # pragma: no cover - Windows
                    fcntl = None  # type: ignore[assignment]
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._flock_depth = 1
                try:
                    yield
                finally:
                    self._flock_depth = 0
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _head(self) -> str | None:
        try:
            return self.repo.head.commit.hexsha
        except ValueError:  # unborn branch: no commit yet
            return None

    def _check_branch(self) -> None:
        if self.repo.head.is_detached:
            raise DetachedHeadError(
                f"the hub {self.path} is on a detached HEAD ({self.repo.head.commit.hexsha[:12]}), so there is no "
                f"branch to commit to; run `git -C {self.path} switch main` (or `git switch -c <new-branch>`) and try again."
            )

    def _retry(self, fn: Callable[[], T], deadline: float) -> T:
        delay = 0.05
        while True:
            try:
                return fn()
            except GitCommandError as exc:
                err = str(exc.stderr or exc).strip()
                m = _LOCK_RE.search(err)
                if not m:
                    cmd = [str(c) for c in (exc.command if isinstance(exc.command, (list, tuple)) else [exc.command])]
                    sub = next((c for c in cmd[1:] if not c.startswith("-") and "=" not in c), "")
                    raise HubError(f"git {sub} failed in {self.path}: {err}") from exc
                if time.monotonic() + delay > deadline:
                    lock = m.group(1)
                    raise IndexLockError(
                        f"another git process holds the lock {lock} (retried for {self.lock_timeout:.1f} s); "
                        f"wait for it to finish, or if no git command is running in {self.path} the lock is stale: "
                        f"delete {lock} and try again."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _commit_paths(self, paths: list[Path], message: str, *, rollback: Callable[[], None] | None = None) -> str:
        """Commit exactly ``paths`` (working-tree content) with ``message``; return the new sha.

        Uses ``git add -f`` then ``git commit --only``, so whatever else is
        staged or modified stays as it was. On failure the paths are unstaged
        again and ``rollback`` runs, then the error is raised.
        """
        rel = [p.relative_to(self.path).as_posix() for p in paths]
        git_dir = Path(self.repo.git_dir)
        fd, msg_file = tempfile.mkstemp(prefix="QUANTLAB_MSG_", dir=git_dir)
        added = False
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(message.encode("utf-8"))
            deadline = time.monotonic() + self.lock_timeout
            self._retry(lambda: self.repo.git.add("-f", "--", *rel), deadline)
            added = True
            exe = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
            out = self._retry(
                lambda: self.repo.git.execute(
                    [exe, "-c", "core.abbrev=no", "commit", "--only", "--no-verify", "--cleanup=verbatim",
                     "-F", msg_file, "--", *rel]
                ),
                deadline,
            )
            # the sha git printed for *this* commit ("[main <sha>] subject"): HEAD may already
            # have moved on if another process committed right after us
            m = _COMMIT_OUT_RE.match(str(out))
            return m.group(1) if m else self.repo.git.rev_list("-1", "HEAD", "--", rel[0])
        except BaseException:
            if added:
                try:
                    if self._head() is None:
                        self.repo.git.rm("--cached", "-q", "--ignore-unmatch", "--", *rel)
                    else:
                        self.repo.git.reset("-q", "--", *rel)
                except GitCommandError:
                    pass  # the index is locked by someone else; nothing more we can do safely
            if rollback is not None:
                rollback()
            raise
        finally:
            try:
                os.unlink(msg_file)
            except OSError:
                pass

    # -- storing -------------------------------------------------------------------
    def _prepare(self, strategy: Any, result: Any, source: Any, when: datetime) -> tuple[Strategy, dict[str, Any], str]:
        strategy, result = _split(strategy, result)
        fields = _result_fields(result)
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
            "source": _normalize_source(source),
            "created_at": created_at,
        })
        params = fields["params"] if fields["params"] is not None else strategy.params
        context = context_trailers(params, fields["data_ref"], fields["bar_seconds"], fields["costs"]) if result is not None else ""
        message = commit_message(strategy.name, fields["metrics"], created_at, "" if run_id is None else str(run_id),
                                 strategy.sha256, context=context)
        return strategy, metadata, message

    @staticmethod
    def _secrets(strategy: Strategy, metadata: Mapping[str, Any], message: str) -> list[SecretFinding]:
        """Everything a store commits, scanned: the code, the name (it becomes the file name), the
        params, the source, the rest of the metadata and the commit message."""
        found = list(find_secrets(strategy.code))
        found += find_secrets_in(strategy.name, "name")
        for key, value in metadata.items():
            if key not in ("name", "code_sha256", "file"):
                found += find_secrets_in(value, key)
        if not found:  # the message repeats the name and metrics; scan it for what nothing above carried
            found += find_secrets_in(message, "commit message")
        return found

    @classmethod
    def _refuse_secrets(cls, strategy: Strategy, metadata: Mapping[str, Any], message: str) -> None:
        findings = list({str(f): f for f in cls._secrets(strategy, metadata, message)}.values())
        if findings:
            label = "(name withheld)" if any(f.where == "name" for f in findings) else repr(strategy.name)
            lines = "\n  ".join(str(f) for f in findings)
            raise SecretsFoundError(
                f"strategy {label} looks like it carries a secret; it was not stored:\n  {lines}\n"
                "Read secrets at run time (os.environ[...]) instead of writing them in the code, "
                "or pass allow_secrets=True if these are not secrets.",
                findings,
            )

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
                "secrets": [str(f) for f in self._secrets(strategy, metadata, message)]}

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
            self._refuse_secrets(strategy, metadata, message)
        with self._exclusive():
            self._check_branch()
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
            sha = self._commit_paths([py, js, *extra], message, rollback=rollback)
        return StoredStrategy(name=strategy.name, path=py, commit=sha, sha256=strategy.sha256, metadata=metadata)

    # -- reading -------------------------------------------------------------------
    def _records(self) -> list[dict[str, Any]]:
        """Every stored strategy in HEAD, newest first: dicts with file, commit, date, metadata."""
        with self._lock:  # GitPython's cat-file helper process is not thread-safe
            return self._read_records()

    def _read_records(self) -> list[dict[str, Any]]:
        head = self._head()
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
        metas = self._read_blobs([f"{head}:{f[:-3]}.json" for f in files])
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

    def _read_blobs(self, specs: list[str]) -> list[bytes | None]:
        """Contents of ``<rev>:<path>`` objects in one ``git cat-file --batch`` (``None`` = missing)."""
        if not specs:
            return []
        exe = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
        proc = subprocess.run([exe, "cat-file", "--batch"], cwd=self.path, input="\n".join(specs).encode() + b"\n",
                              capture_output=True, check=True)
        out, pos, blobs = proc.stdout, 0, []
        for _ in specs:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if header and header[-1] not in (b"missing", b"ambiguous") and len(header) == 3:
                size = int(header[2])
                blobs.append(out[pos:pos + size])
                pos += size + 1
            else:
                blobs.append(None)
        return blobs

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
        wanted = None if params is None else _canonical(params)
        for r in self._records():
            meta = r["metadata"]
            if meta.get("code_sha256") != code_sha256:
                continue
            if wanted is None or _canonical(meta.get("params") or {}) == wanted:
                return self._stored(r)
        return None

    def log(self, max_count: int = 20) -> pd.DataFrame:
        """The hub's recent commits (newest first): ``commit, date, author, kind, subject``,
        where ``kind`` is ``strategy``, ``deployment`` or ``other``."""
        import pandas as pd

        if self._head() is None:
            return pd.DataFrame(columns=["commit", "date", "author", "kind", "subject"])
        rows = []
        for c in self.repo.iter_commits(max_count=max_count):
            subject = c.message.splitlines()[0] if c.message else ""
            kind = "strategy" if subject.startswith("Strategy: ") else "deployment" if subject.startswith("Deployment ") else "other"
            rows.append({"commit": c.hexsha, "date": c.committed_datetime, "author": c.author.name, "kind": kind, "subject": subject})
        frame = pd.DataFrame(rows, columns=["commit", "date", "author", "kind", "subject"])
        frame["date"] = pd.to_datetime(frame["date"], utc=True)
        return frame

    # -- deployments ledger -------------------------------------------------------------
    @property
    def ledger_path(self) -> Path:
        """``<hub>/deployments.jsonl``, or ``<hub>/.quantlab/deployments-ledger.jsonl`` when the repository
        git-ignores a ``deployments.jsonl`` of its own (the hub never force-commits an ignored file:
        it says so once, with a :class:`UserWarning`, and keeps its ledger beside)."""
        if self._ledger_path is None:
            self._ledger_path = self._find_ledger()
        return self._ledger_path

    def _find_ledger(self) -> Path:
        main = self.path / _ledger.LEDGER_FILE
        aside = self.path / ".quantlab" / "deployments-ledger.jsonl"  # a name the ignored file's pattern does not match
        for candidate in (main, aside):
            rel = candidate.relative_to(self.path).as_posix()
            if self.repo.git.ls_files("--", rel).strip():  # tracked: it is the ledger, whatever .gitignore says now
                return candidate
        why = self._ignored_by(main)
        if why is None:
            return main
        if self._ignored_by(aside) is not None:
            raise HubError(
                f"{main} is git-ignored ({why}) and so is {aside}; the hub will not force-commit ignored files. "
                f"Un-ignore one of them (e.g. add '!/.quantlab/' to {self.path / '.gitignore'})."
            )
        import warnings

        warnings.warn(
            f"quantlab: {main.name} is git-ignored in {self.path} ({why}), so the hub does not commit it; "
            f"the deployments ledger is kept in {aside.relative_to(self.path).as_posix()} instead.",
            UserWarning, stacklevel=4,
        )
        return aside

    def _ignored_by(self, path: Path) -> str | None:
        """``"<source>:<line>: <pattern>"`` when git ignores ``path``, else ``None``."""
        rel = path.relative_to(self.path).as_posix()
        try:
            out = self.repo.git.check_ignore("-v", "--no-index", "--", rel)
        except GitCommandError:  # exit status 1: not ignored
            return None
        source, _, pattern = out.partition("\t")[0].rpartition(":")
        return f"{source}: {pattern}" if out else None

    def record_deployment(self, event: Mapping[str, Any]) -> str:
        """Append one deployment event to ``deployments.jsonl`` and commit it; return the commit sha.

        See :mod:`quantlab.hub.ledger` for the fields (``strategy_name`` and
        ``status`` are required). If the commit fails (say, the index stays
        locked), the line stays in the file, so the event is not lost: it is
        committed with the next event, and :meth:`deployments` already shows it.

        >>> hub.record_deployment({"strategy_name": "SMA", "status": "running", "commit": stored.commit,
        ...                        "broker": "broker", "broker_deployment_id": "dep-1"})   # doctest: +SKIP
        """
        e = _ledger.normalize_event(event)
        line = json.dumps(e, ensure_ascii=False, separators=(", ", ": ")) + "\n"
        with self._exclusive():
            self._check_branch()
            path = self.ledger_path
            path.parent.mkdir(exist_ok=True)
            needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
            with open(path, "a", encoding="utf-8", newline="\n") as fh:
                fh.write(("\n" if needs_newline else "") + line)
            try:
                return self._commit_paths([path], _ledger.ledger_message(e))
            except HubError as exc:
                raise type(exc)(f"{exc}\nThe event was written to {path} and will be committed with the next event.") from exc

    def _events(self, commit: str | None) -> list[dict[str, Any]]:
        with self._exclusive():  # never read a line another process is half-way through appending
            events = _ledger.read_events(self.ledger_path)
        if commit is not None:
            events = [e for e in events if str(e.get("commit") or "").startswith(str(commit))]
        return events

    def deployments(self, commit: str | None = None) -> pd.DataFrame:
        """Every deployment event in the ledger, oldest first (columns: :data:`quantlab.hub.ledger.FIELDS`
        + extras); ``commit`` (full or a prefix) keeps the events of one stored strategy.

        >>> hub.deployments()[["strategy_name", "status", "triggered_at"]]   # doctest: +SKIP
        """
        return _ledger.events_frame(self._events(commit))

    # -- trials (multiple testing) ------------------------------------------------
    @property
    def trials_path(self) -> Path:
        """``<git dir>/quantlab/trials.json``: trial counts per strategy family (private to this clone)."""
        return self.quantlab_dir / "trials.json"

    @staticmethod
    def _family(name: Any) -> str:
        return slugify(name)

    def _read_trials(self) -> dict[str, int]:
        try:
            data = json.loads(self.trials_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}          # a damaged file restarts the counts rather than blocking backtests
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}

    def trials(self, name: Any) -> int:
        """How many variants of the strategy family ``name`` were tried: every backtest, sweep
        combination and generated candidate a :class:`~quantlab.Lab` ran under that name
        (names are compared by their slug: ``"SMA cross"`` and ``"sma-cross"`` are one family).

        The deflated Sharpe ratio of a stored strategy is computed against this count.

        >>> hub.record_trials("SMA cross", 12); hub.trials("sma-cross")   # doctest: +SKIP
        12
        """
        return self._read_trials().get(self._family(name), 0)

    def record_trials(self, name: Any, n: int = 1) -> int:
        """Add ``n`` trials to the family ``name``; return its new count. Safe across processes
        (under the hub's write lock, written atomically)."""
        n = int(n)
        if n < 0:
            raise ValueError(f"trials can only be added (n >= 0), got {n}.")
        key = self._family(name)
        with self._exclusive():
            counts = self._read_trials()
            counts[key] = counts.get(key, 0) + n
            atomic_write_text(self.trials_path, json.dumps(counts, indent=1, sort_keys=True))
            return counts[key]

    def deployment_status(self, commit: str | None = None) -> pd.DataFrame:
        """The latest status of each deployment (key: strategy commit + broker deployment id;
        see :mod:`quantlab.hub.ledger`), optionally only for one strategy ``commit``.

        >>> hub.deployment_status(stored.commit)["status"].tolist()   # doctest: +SKIP
        ['running']
        """
        return _ledger.latest_status(self._events(commit))

    def deployment_rows(self, commit: str | None = None) -> list[dict[str, Any]]:
        """The rows of :meth:`deployment_status` as plain dicts, oldest first (times as ISO text):
        for code that needs no table (the command line lists and stops deployments without pandas).

        >>> [r["status"] for r in hub.deployment_rows(stored.commit)]   # doctest: +SKIP
        ['running']
        """
        return _ledger.latest_rows(self._events(commit))

    # -- remote --------------------------------------------------------------------------
    def push(self) -> str:
        """Push the current branch to the configured remote; return the pushed branch name.

        A failed push raises :class:`HubError`; the local commits are kept, push again later.
        """
        self._check_branch()
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
        head = self._head()
        return (
            f"AssetsHub({str(self.path)!r}, branch={self.branch!r}, strategies={len(self._records())}, "
            f"head={head[:12] if head else None})"
        )

    def _repr_html_(self) -> str:
        frame = self.strategies()
        head = self._head()
        table = frame[["name", "commit", "date", "sharpe", "max_drawdown", "profit_factor"]].head(10).assign(
            commit=lambda f: f["commit"].str[:12]
        ).to_html(index=False) if len(frame) else "<i>no strategies stored yet</i>"
        return (
            f"<div><b>AssetsHub</b> <code>{html.escape(str(self.path))}</code> "
            f"branch <code>{html.escape(str(self.branch))}</code> head <code>{head[:12] if head else '—'}</code>, "
            f"{len(frame)} strateg{'y' if len(frame) == 1 else 'ies'}{table}</div>"
        )
