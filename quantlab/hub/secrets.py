"""Find obvious secrets in strategy code before it is committed.

Git history is forever: a key committed once is leaked to everyone who clones
the hub. :func:`find_secrets` looks for

* well-known key formats anywhere in the source: OpenAI/Anthropic style
  ``sk-...``, AWS access key ids ``AKIA...``/``ASIA...``, GitHub tokens
  ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``, Slack tokens
  ``xoxb-``/``xoxp-``/..., Google API keys ``AIza...``, and PEM private key
  blocks ``-----BEGIN ... PRIVATE KEY-----``;
* a non-empty string literal assigned to (or passed as, or used as the dict
  key for) a name that says it is secret: ``password``, ``passwd``, ``secret``,
  ``token``, ``api_key``, ``apikey``, ``access_key``, ``private_key``,
  ``auth``/``credentials`` (``api_token = "abc123"``,
  ``connect(password="hunter2")``, ``{"token": "..."}``).

Values read at run time (``os.environ["API_KEY"]``) are fine, and so are
obvious placeholders (``""``, ``"..."``, ``"<your key>"``, ``"changeme"``,
``"xxxx"``). It is a guard against accidents, not a secret scanner.

Example
-------
>>> [f.kind for f in find_secrets("API_KEY = 'sk-abcdefghijklmnopqrstuvwx'\\n")]
['API key (sk-...)']
>>> find_secrets("import os\\nkey = os.environ['KEY']\\n")
[]
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["SecretFinding", "find_secrets", "find_secrets_in", "secrets_in_store", "refuse_secrets"]

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("API key (sk-...)", re.compile(r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{20,}")),
    ("AWS access key id (AKIA...)", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token (ghp_...)", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("Slack token (xox...)", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Google API key (AIza...)", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
]

_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"client[_-]?secret|auth|credentials?|bearer)$",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"^(\W*|x+|\*+|\.+|changeme|change[_ -]?me|todo|none|null|secret|password|token|<.*>|\{.*\}|\$\{?\w+\}?)$", re.IGNORECASE)


@dataclass(frozen=True)
class SecretFinding:
    """One suspected secret: the 1-based ``line``, what it looks like (``kind``) and a redacted ``preview``;
    ``where`` is ``"code"`` or the committed field it was found in (``"name"``, ``"params['key']"``, ...)."""

    line: int
    kind: str
    preview: str
    where: str = "code"

    def __str__(self) -> str:
        if self.where != "code":
            return f"{self.where}: {self.kind} ({self.preview})"
        return f"line {self.line}: {self.kind} ({self.preview})"


def _redact(value: str) -> str:
    value = value.strip()
    if len(value) <= 6:
        return "*" * len(value)
    return value[:4] + "…" + "*" * 4


def _target_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return [node.slice.value]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for elt in node.elts for n in _target_names(elt)]
    return []


def _const_str(node: ast.AST | None) -> str | None:
    """The text of a string literal, of adjacent literals (``"sk-" "abc"``, joined by the parser)
    or of literals added together (``"sk-" + "abc"``); ``None`` for anything computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_str(node.left), _const_str(node.right)
        if left is not None and right is not None:
            return left + right
    if isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in node.values):
        return "".join(str(v.value) for v in node.values)  # type: ignore[attr-defined]
    return None


def _is_secret_text(text: str | None) -> bool:
    if text is None:
        return False
    text = text.strip()
    return len(text) >= 4 and not _PLACEHOLDER.match(text)


def _is_secret_literal(value: ast.AST | None) -> bool:
    return _is_secret_text(_const_str(value))


def _pattern_findings(text: str, line: int, where: str = "code") -> list[SecretFinding]:
    return [SecretFinding(line, kind, _redact(m.group(0)), where)
            for kind, pattern in _PATTERNS for m in pattern.finditer(text)]


def _literal_findings(tree: ast.AST) -> list[SecretFinding]:
    """Key formats inside string literals as Python reads them: a key split across adjacent
    literals or ``+``-joined literals (which no single source line shows whole)."""
    found: list[SecretFinding] = []
    inner: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        text = _const_str(node)
        if text is None:
            continue
        if isinstance(node, ast.BinOp):
            inner.update(id(n) for n in ast.walk(node) if n is not node)
        found.extend(_pattern_findings(text, getattr(node, "lineno", 0)))
    return found


def _named_findings(code: str) -> list[SecretFinding]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []  # the strategy check reports syntax errors
    found: list[SecretFinding] = []

    def add(name: str, value: ast.AST, lineno: int) -> None:
        found.append(SecretFinding(lineno, f"string literal assigned to {name!r}", _redact(_const_str(value) or "")))

    for node in ast.walk(tree):
        pairs: list[tuple[list[str], ast.AST | None, int]] = []
        if isinstance(node, ast.Assign):
            pairs.append(([n for t in node.targets for n in _target_names(t)], node.value, node.lineno))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            pairs.append((_target_names(node.target), node.value, node.lineno))
        elif isinstance(node, ast.keyword) and node.arg:
            pairs.append(([node.arg], node.value, node.value.lineno))
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    pairs.append(([k.value], v, v.lineno))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                pairs.append(([arg.arg], default, default.lineno))
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                if default is not None:
                    pairs.append(([arg.arg], default, default.lineno))
        for names, value, lineno in pairs:
            for name in names:
                if _SECRET_NAME.search(name) and _is_secret_literal(value):
                    add(name, value, lineno)  # type: ignore[arg-type]
                    break
    return found


def find_secrets(code: str) -> list[SecretFinding]:
    """Every suspected secret in ``code``, sorted by line (empty list = nothing found).

    >>> [str(f) for f in find_secrets("x = 1\\npassword = 'hunter2'\\n")]
    ["line 2: string literal assigned to 'password' (hunt…****)"]
    """
    found: list[SecretFinding] = []
    for lineno, line in enumerate(code.splitlines(), start=1):
        found.extend(_pattern_findings(line, lineno))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    if tree is not None:
        seen = {(f.line, f.kind) for f in found}
        for f in _literal_findings(tree):
            if (f.line, f.kind) not in seen:
                found.append(f)
                seen.add((f.line, f.kind))
    seen_lines = {f.line for f in found}
    found.extend(f for f in _named_findings(code) if f.line not in seen_lines)
    return sorted(found, key=lambda f: (f.line, f.kind))


def find_secrets_in(value: Any, where: str) -> list[SecretFinding]:
    """Suspected secrets in committed data that is not code: a name, params, metadata, a message.

    Every string is checked for the key formats, and a non-placeholder string under a
    secret-sounding key (``{"api_key": "..."}``) is reported; ``where`` names the field.

    >>> [str(f) for f in find_secrets_in({"fast": 10, "api_key": "abc123456"}, "params")]
    ["params['api_key']: string under a secret-sounding key (abc1…****)"]
    """
    found: list[SecretFinding] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, str):
            found.extend(_pattern_findings(node, 0, path))
        elif isinstance(node, Mapping):
            for k, v in node.items():
                sub = f"{path}[{k!r}]"
                if isinstance(k, str):
                    found.extend(_pattern_findings(k, 0, sub))
                if isinstance(k, str) and _SECRET_NAME.search(k) and isinstance(v, str) and _is_secret_text(v):
                    if not _pattern_findings(v, 0):
                        found.append(SecretFinding(0, "string under a secret-sounding key", _redact(v), sub))
                        continue
                walk(v, sub)
        elif isinstance(node, (list, tuple, set, frozenset)):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(value, where)
    return found


def secrets_in_store(code: str, name: str, metadata: Mapping[str, Any], message: str) -> list[SecretFinding]:
    """Everything a hub store commits, scanned: the code, the name (it becomes the file name), the
    params, the source, the rest of the metadata and the commit message.

    >>> [f.where for f in secrets_in_store("x = 1", "demo", {"params": {"key": "sk-" + "a" * 40}}, "")]
    ["params['key']"]
    """
    found = list(find_secrets(code))
    found += find_secrets_in(name, "name")
    for key, value in metadata.items():
        if key not in ("name", "code_sha256", "file"):
            found += find_secrets_in(value, key)
    if not found:  # the message repeats the name and metrics; scan it for what nothing above carried
        found += find_secrets_in(message, "commit message")
    return found


def refuse_secrets(code: str, name: str, metadata: Mapping[str, Any], message: str) -> None:
    """Raise :class:`~quantlab.hub.errors.SecretsFoundError` listing every finding of :func:`secrets_in_store`."""
    from .errors import SecretsFoundError

    findings = list({str(f): f for f in secrets_in_store(code, name, metadata, message)}.values())
    if findings:
        label = "(name withheld)" if any(f.where == "name" for f in findings) else repr(name)
        lines = "\n  ".join(str(f) for f in findings)
        raise SecretsFoundError(
            f"strategy {label} looks like it carries a secret; it was not stored:\n  {lines}\n"
            "Read secrets at run time (os.environ[...]) instead of writing them in the code, "
            "or pass allow_secrets=True if these are not secrets.",
            findings,
        )
