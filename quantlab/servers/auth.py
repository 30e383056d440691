"""Bearer tokens for quantlab's HTTP servers: one verifier, one way to find (or make) the token.

Both the backtest server and the paper broker run code or move money, so over HTTP they
always require ``Authorization: Bearer <token>``. The check is the MCP SDK's own
(``MCPServer(auth=..., token_verifier=...)``): :func:`bearer_auth` gives those two
arguments for a static token, verified in constant time by :class:`StaticTokenVerifier`.

The token comes, in this order, from ``--token`` (visible in ``ps``: prefer the others),
``--token-file``, an environment variable, or a default token file; when none of them
has one, a random token is generated into the token file, created with mode 0600.

Example
-------
>>> import tempfile, os, stat
>>> path = os.path.join(tempfile.mkdtemp(), "server.token")
>>> token, source = resolve_token(default_file=path)
>>> source == path and len(token) > 30, oct(stat.S_IMODE(os.stat(path).st_mode))
(True, '0o600')
>>> resolve_token(default_file=path)[0] == token
True
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["StaticTokenVerifier", "bearer_auth", "resolve_token", "private_file"]


class StaticTokenVerifier:
    """The SDK's ``TokenVerifier`` for one shared secret (compared in constant time).

    >>> import asyncio
    >>> v = StaticTokenVerifier("s3cret")
    >>> asyncio.run(v.verify_token("wrong")) is None, asyncio.run(v.verify_token("s3cret")).client_id
    (True, 'quantlab')
    >>> v
    StaticTokenVerifier(token=***)
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty bearer token would let anyone in; give a token or a token file.")
        self._token = token.encode("utf-8")

    def __repr__(self) -> str:
        return "StaticTokenVerifier(token=***)"

    async def verify_token(self, token: str) -> Any:
        from mcp.server.auth.provider import AccessToken

        if hmac.compare_digest(token.encode("utf-8"), self._token):
            return AccessToken(token=token, client_id="quantlab", scopes=[])
        return None


def bearer_auth(token: str, host: str = "127.0.0.1") -> dict[str, Any]:
    """The ``auth`` and ``token_verifier`` arguments of ``MCPServer`` for a static bearer token.

    >>> sorted(bearer_auth("s3cret"))
    ['auth', 'token_verifier']
    """
    from mcp.server.auth.settings import AuthSettings

    # a static token has no authorization server: the issuer URL is required by the
    # settings model but only used for OAuth routes, which are not mounted here
    return {"auth": AuthSettings(issuer_url=f"http://{host}", resource_server_url=None),
            "token_verifier": StaticTokenVerifier(token)}


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (if missing) with mode 0600 and make sure it has that mode; return it.

    >>> import tempfile, os, stat
    >>> p = private_file(os.path.join(tempfile.mkdtemp(), "x.log"))
    >>> oct(stat.S_IMODE(p.stat().st_mode))
    '0o600'
    """
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return p


def resolve_token(token: str | None = None, token_file: str | os.PathLike[str] | None = None, *,
                  env: str | None = None, default_file: str | os.PathLike[str] | None = None) -> tuple[str, str | None]:
    """The bearer token and where it came from (a file path, ``"$ENV"``, or ``None`` for ``--token``).

    Order: ``token``, then ``token_file``, then the ``env`` variable, then ``default_file``. A token
    file that exists is read; a missing or empty one gets a random token (created with mode 0600).
    """
    if token:
        return token, None
    if env and os.environ.get(env, "").strip() and not token_file:
        return os.environ[env].strip(), f"${env}"
    path_arg = token_file or default_file
    if path_arg is None:
        raise ValueError("no bearer token: pass a token file (or set the environment variable) so the server is not open to anyone.")
    path = Path(path_arg).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(tok + "\n")
    return tok, str(path)
