"""Safe file names for stored strategies.

A strategy's display name can be anything a person (or a code generator) typed:
``"SMA cross 10/50"``, ``"../../etc/passwd"``, ``"CON"``, ``"日本語"``, a 5 000
character line. :func:`slugify` turns it into a short lowercase ASCII slug made
of ``[a-z0-9_-]`` only, and :func:`strategy_path` builds the final path
``generated_bots/<slug>_<YYYYmmdd-HHMMSS>[-N].py``, resolves it and checks that
it lies inside ``generated_bots/``.

Rules (in order):

1. Unicode is NFKD-normalised and reduced to ASCII (``"Café"`` -> ``"cafe"``);
   everything else that is not a letter or digit becomes ``-`` (so ``/``,
   ``\\``, ``..``, NUL and spaces can never survive), runs collapse, ends are trimmed.
2. A name that sanitises to nothing becomes ``"strategy"``.
3. A slug equal to a reserved Windows device name (``con``, ``prn``, ``aux``,
   ``nul``, ``com1``..``com9``, ``lpt1``..``lpt9``) is prefixed with ``strategy-``.
4. Slugs longer than :data:`MAX_SLUG` characters are cut and end with 8 hex
   digits of the SHA-1 of the full name, so two long names that share a prefix
   still get different slugs.

Example
-------
>>> slugify("SMA cross 10/50")
'sma-cross-10-50'
>>> slugify("../../etc/passwd")
'etc-passwd'
>>> slugify("CON"), slugify("???")
('strategy-con', 'strategy')
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from datetime import datetime
from pathlib import Path

__all__ = ["slugify", "strategy_path", "reserve_path", "BOTS_DIR", "MAX_SLUG", "FALLBACK_SLUG", "UnsafePathError"]

BOTS_DIR = "generated_bots"
MAX_SLUG = 60
FALLBACK_SLUG = "strategy"
STAMP_FORMAT = "%Y%m%d-%H%M%S"

_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_UNSAFE = re.compile(r"[^a-z0-9_]+")
_FILE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*_\d{8}-\d{6}(-\d+)?\.py$")


class UnsafePathError(ValueError):
    """A computed path would fall outside ``generated_bots/`` (never expected; a safety net)."""


def slugify(name: object, max_len: int = MAX_SLUG) -> str:
    """A safe, short, lowercase ASCII slug for ``name`` (see the module doc for the rules).

    >>> slugify("Mean Reversion (RSI<30)")
    'mean-reversion-rsi-30'
    >>> len(slugify("x" * 500)) <= 60
    True
    """
    text = "" if name is None else str(name)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = _UNSAFE.sub("-", ascii_text).strip("-_")
    slug = re.sub(r"[-_]{2,}", "-", slug)
    if not slug:
        return FALLBACK_SLUG
    if slug in _RESERVED:
        slug = f"{FALLBACK_SLUG}-{slug}"
    if len(slug) > max_len:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        slug = slug[: max_len - 9].rstrip("-_") + "-" + digest
    return slug


def _inside(root: Path, path: Path) -> Path:
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved.parent != resolved_root or not resolved.is_relative_to(resolved_root):
        raise UnsafePathError(f"refusing to write {resolved}: it is not directly inside {resolved_root}.")
    return resolved


def strategy_path(repo_root: str | os.PathLike[str], name: object, when: datetime, n: int = 1) -> Path:
    """The checked path ``<repo_root>/generated_bots/<slug>_<stamp>[-n].py`` (not created).

    ``n`` > 1 adds the ``-n`` suffix used when the plain name is taken.

    >>> from datetime import datetime
    >>> strategy_path("/hub", "SMA", datetime(2026, 1, 2, 3, 4, 5)).name
    'sma_20260102-030405.py'
    """
    bots = Path(repo_root) / BOTS_DIR
    suffix = "" if n <= 1 else f"-{n}"
    filename = f"{slugify(name)}_{when.strftime(STAMP_FORMAT)}{suffix}.py"
    if not _FILE_RE.match(filename):  # pragma: no cover - slugify guarantees it
        raise UnsafePathError(f"refusing unsafe file name {filename!r}.")
    return _inside(bots, bots / filename)


def reserve_path(repo_root: str | os.PathLike[str], name: object, when: datetime, max_tries: int = 1000) -> Path:
    """Create an empty, unique ``.py`` file for ``name`` and return its path.

    The file is created atomically (``O_CREAT | O_EXCL``), so two stores in the
    same second -- even from two processes -- get ``..._stamp.py`` and
    ``..._stamp-2.py`` instead of overwriting each other. A name whose sibling
    ``.json`` already exists is skipped too.

    >>> p = reserve_path("/tmp/hub-doc", "demo", datetime(2026, 1, 2))  # doctest: +SKIP
    """
    bots = Path(repo_root) / BOTS_DIR
    bots.mkdir(parents=True, exist_ok=True)
    for n in range(1, max_tries + 1):
        path = strategy_path(repo_root, name, when, n)
        if path.with_suffix(".json").exists():
            continue
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise UnsafePathError(f"could not find a free file name for {name!r} after {max_tries} tries in {bots}.")
