"""The assets hub's Git plumbing: one repository handle, the hub's write lock across threads and
processes, commits of exactly the hub's own paths, and retries while another process holds a lock.

:class:`~quantlab.hub.assets.AssetsHub` (storing, reading) and its deployments ledger and trial
counts (:mod:`quantlab.hub.deployments`) all write through one :class:`HubRepo`.

Example
-------
>>> import tempfile, git
>>> path = Path(tempfile.mkdtemp())
>>> repo = HubRepo(git.Repo.init(path, initial_branch="main"), path)
>>> repo.set_identity(None); repo.initial_commit(); repo.branch
'main'
>>> repo.head() is not None
True
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import git
from git.exc import GitCommandError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the hub's locks are this process's only
    fcntl = None  # type: ignore[assignment]

from .errors import DetachedHeadError, HubError, IndexLockError

__all__ = ["HubRepo", "init_repo", "parse_author", "utc_now", "README", "DEFAULT_AUTHOR"]

T = TypeVar("T")
DEFAULT_AUTHOR = ("quantlab", "quantlab@localhost")
_LOCK_RE = re.compile(r"Unable to create '([^']+\.lock)'")
_COMMIT_OUT_RE = re.compile(r"^\[.*? (?:\(root-commit\) )?([0-9a-f]{64}|[0-9a-f]{40})\] ")
README = """# quantlab assets hub

Strategies stored by quantlab with their backtest results.

* `generated_bots/<name>_<YYYYmmdd-HHMMSS>.py`: the strategy code; the sibling `.json`
  holds its parameters, metrics, data reference, costs, code SHA-256 and source; a strategy the
  code agent wrote also has `<name>_<ts>.transcript.jsonl` (every message of its generation).
* `deployments.jsonl`: one line per deployment event (pending, running, failed, stopped).
* Every store and every deployment event is one commit: `git log` is the audit trail,
  `git log --format='%h %(trailers:key=Quantlab-Run,valueonly)'` lists run ids.
"""


def utc_now() -> datetime:
    """Now in UTC, whole seconds: names a stored file and stamps its metadata."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def init_repo(path: Path) -> tuple[git.Repo, bool]:
    """Create the hub's repository at ``path`` (a folder, made if missing); ``(repo, created)``.

    Two processes may create one hub at once, and two concurrent ``git init`` of one folder race
    on its template files: the folder itself is ``flock``-ed around the check and the ``init``,
    so the second process opens what the first created.
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return git.Repo(path), False
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return git.Repo.init(path, initial_branch="main"), True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def parse_author(author: Any) -> tuple[str, str] | None:
    """``"Name <email>"``, a ``(name, email)`` pair or a ``git.Actor`` as ``(name, email)``.

    >>> parse_author("Ada <ada@example.org>")
    ('Ada', 'ada@example.org')
    """
    if author is None:
        return None
    if isinstance(author, git.Actor):
        return author.name or DEFAULT_AUTHOR[0], author.email or DEFAULT_AUTHOR[1]
    if isinstance(author, (tuple, list)) and len(author) == 2:
        return str(author[0]), str(author[1])
    if isinstance(author, str):
        m = re.fullmatch(r"\s*(.*?)\s*<([^<>]+)>\s*", author)
        if m:
            return m.group(1) or DEFAULT_AUTHOR[0], m.group(2)
        return author.strip() or DEFAULT_AUTHOR[0], DEFAULT_AUTHOR[1]
    raise TypeError(f"author must be 'Name <email>', a (name, email) tuple or a git.Actor, got {author!r}.")

class HubRepo:
    """One hub's Git repository (``repo``, working tree ``path``) and its write lock.

    ``lock_timeout``: seconds to keep retrying while another process holds the index lock.
    """

    def __init__(self, repo: git.Repo, path: Path, lock_timeout: float = 5.0) -> None:
        self.repo = repo
        self.path = path
        self.lock_timeout = float(lock_timeout)
        self.lock = threading.RLock()  # also guards GitPython's cat-file helper, which is not thread-safe
        self.author: tuple[str, str] = DEFAULT_AUTHOR
        self._flock_depth = 0

    def set_identity(self, author: tuple[str, str] | None) -> None:
        """Author and committer of the hub's commits: ``author``, else the repository's user, else quantlab's."""
        if author is None:
            reader = self.repo.config_reader()
            name = reader.get_value("user", "name", default="") or ""
            email = reader.get_value("user", "email", default="") or ""
            if name and email:
                self.author = (str(name), str(email))
                return
            author = (str(name) or DEFAULT_AUTHOR[0], str(email) or DEFAULT_AUTHOR[1])
        self.author = author
        self.repo.git.update_environment(
            GIT_AUTHOR_NAME=author[0], GIT_AUTHOR_EMAIL=author[1],
            GIT_COMMITTER_NAME=author[0], GIT_COMMITTER_EMAIL=author[1],
        )

    def set_remote(self, remote_name: str, url: str) -> None:
        """Configure the remote ``remote_name`` as ``url`` (refused if it points elsewhere)."""
        names = [r.name for r in self.repo.remotes]
        if remote_name not in names:
            self.repo.create_remote(remote_name, url)
            return
        current = self.repo.remote(remote_name).url
        if current != url:
            raise HubError(
                f"the hub's remote {remote_name!r} already points to {current}, not {url}; "
                f"pass remote_name='other' or change it with `git -C {self.path} remote set-url {remote_name} {url}`."
            )

    def initial_commit(self) -> None:
        """The first commit of a new hub: its README."""
        readme = self.path / "README.md"
        if readme.exists() and self.repo.git.ls_files("--", "README.md").strip() == "" and readme.read_text(
                encoding="utf-8", errors="replace") == README:
            readme.unlink()  # our own README from a creation that did not get to commit: write and commit it again
        if readme.exists():
            self.retry(lambda: self.repo.git.commit("--allow-empty", "--no-verify", "-q", "-m", "Create the quantlab assets hub"),
                        time.monotonic() + self.lock_timeout)
            return
        readme.write_text(README, encoding="utf-8")
        self.commit_paths([readme], "Create the quantlab assets hub\n")

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
    def exclusive(self) -> Iterator[None]:
        """Hold the hub's write lock: this object's threads and every other process writing to the hub.

        ``<git dir>/quantlab/hub.lock`` is ``flock``-ed around a whole write (reserve the file
        names, write, ``git add``, ``git commit``), so two kernels storing or recording at once
        queue instead of one committing the other's ledger line (which left the second with a
        spurious "nothing to commit"). Re-entrant within a thread.
        """
        with self.lock:
            if self._flock_depth:
                self._flock_depth += 1
                try:
                    yield
                finally:
                    self._flock_depth -= 1
                return
            fd = os.open(self.quantlab_dir / "hub.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
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

    def head(self) -> str | None:
        """The sha of HEAD, or ``None`` before the first commit."""
        try:
            return self.repo.head.commit.hexsha
        except ValueError:  # unborn branch: no commit yet
            return None

    def check_branch(self) -> None:
        """Raise :class:`DetachedHeadError` (with the command to fix it) on a detached HEAD."""
        if self.repo.head.is_detached:
            raise DetachedHeadError(
                f"the hub {self.path} is on a detached HEAD ({self.repo.head.commit.hexsha[:12]}), so there is no "
                f"branch to commit to; run `git -C {self.path} switch main` (or `git switch -c <new-branch>`) and try again."
            )

    def retry(self, fn: Callable[[], T], deadline: float) -> T:
        """Run a git command, retrying while another process holds a lock, until ``deadline``."""
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

    def commit_paths(self, paths: list[Path], message: str, *, rollback: Callable[[], None] | None = None) -> str:
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
            self.retry(lambda: self.repo.git.add("-f", "--", *rel), deadline)
            added = True
            exe = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
            out = self.retry(
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
                    if self.head() is None:
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

    def read_blobs(self, specs: list[str]) -> list[bytes | None]:
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
