"""Server configuration in the ``mcpServers`` shape MCP users already write.

::

    {"mcpServers": {
        "time":     {"command": "python", "args": ["-m", "mcp_server_time"], "env": {}, "cwd": null},
        "remote":   {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}
    }}

read from a dict, a JSON file, or (with no source) ``quantlab.toml`` / ``pyproject.toml``
``[tool.quantlab]`` (key ``mcpServers``) in the current directory.
``${VAR}`` in header values and env values is expanded from the environment.

Example
-------
>>> cfg = load_config({"mcpServers": {"t": {"command": "python", "args": ["-m", "mcp_server_time"]}}})
>>> cfg["t"].transport, cfg["t"].target
('stdio', 'python -m mcp_server_time')
"""
from __future__ import annotations

import json
import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ServerConfig", "load_config", "find_config_file"]

ConfigSource = Mapping[str, Any] | str | os.PathLike[str] | None
_KIND_ALIASES = {"streamable-http": "http", "streamableHttp": "http", "streamable_http": "http"}


@dataclass(frozen=True)
class ServerConfig:
    """One server entry: stdio (``command``/``args``/``env``/``cwd``) or HTTP (``url``/``headers``).

    >>> ServerConfig.from_entry("api", {"url": "http://127.0.0.1:9/mcp"}).transport
    'http'
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    kind: str | None = None

    @property
    def transport(self) -> str:
        """``"stdio"`` or ``"http"`` (or the ``"transport"``/``"type"`` named in the entry, for
        transports added with :func:`~quantlab.client.register_transport`)."""
        if self.kind:
            return self.kind
        return "http" if self.url else "stdio"

    @property
    def target(self) -> str:
        """The command line (stdio) or URL (http), for messages."""
        if self.url:
            return self.url
        return shlex.join([self.command or "", *self.args])

    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any]) -> "ServerConfig":
        """Validate one ``mcpServers`` entry, with an error that says what to fix."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"server {name!r}: expected a table/object with 'command' or 'url', got {type(entry).__name__}")
        has_cmd, has_url = bool(entry.get("command")), bool(entry.get("url"))
        if has_cmd == has_url:
            raise ValueError(
                f"server {name!r}: give exactly one of 'command' (stdio: command, args, env, cwd) "
                f"or 'url' (streamable HTTP: url, headers); got keys {sorted(entry)}"
            )
        known = {"command", "args", "env", "cwd", "url", "headers", "type", "transport", "description", "disabled"}
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"server {name!r}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        args = entry.get("args") or []
        if isinstance(args, str) or not all(isinstance(a, (str, int, float)) for a in args):
            raise ValueError(f"server {name!r}: 'args' must be a list of strings, got {args!r}")
        env = {str(k): os.path.expandvars(str(v)) for k, v in (entry.get("env") or {}).items()}
        headers = {str(k): os.path.expandvars(str(v)) for k, v in (entry.get("headers") or {}).items()}
        cwd = entry.get("cwd")
        kind = entry.get("transport") or entry.get("type")
        kind = _KIND_ALIASES.get(str(kind), str(kind)) if kind else None
        if kind in ("stdio", "http") and kind != ("http" if has_url else "stdio"):
            raise ValueError(f"server {name!r}: transport {kind!r} does not match {'url' if has_url else 'command'}")
        if kind == ("http" if has_url else "stdio"):
            kind = None
        return cls(
            name=name,
            command=str(entry["command"]) if has_cmd else None,
            args=tuple(str(a) for a in args),
            env=env,
            cwd=str(Path(cwd).expanduser()) if cwd else None,
            url=str(entry["url"]) if has_url else None,
            headers=headers,
            kind=kind,
        )

    def to_entry(self) -> dict[str, Any]:
        """Back to the ``mcpServers`` JSON shape."""
        if self.url:
            out: dict[str, Any] = {"url": self.url}
            if self.kind:
                out["transport"] = self.kind
            if self.headers:
                out["headers"] = dict(self.headers)
            return out
        out = {"command": self.command, "args": list(self.args)}
        if self.kind:
            out["transport"] = self.kind
        if self.env:
            out["env"] = dict(self.env)
        if self.cwd:
            out["cwd"] = self.cwd
        return out


def find_config_file(directory: str | os.PathLike[str] | None = None) -> Path | None:
    """``quantlab.toml`` or a ``pyproject.toml`` with ``[tool.quantlab] mcpServers`` in ``directory`` (default cwd).

    >>> find_config_file("/nonexistent") is None
    True
    """
    d = Path(directory) if directory is not None else Path.cwd()
    q = d / "quantlab.toml"
    if q.is_file():
        return q
    p = d / "pyproject.toml"
    if p.is_file():
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None
        if "mcpServers" in data.get("tool", {}).get("quantlab", {}):
            return p
    return None


def _read_file(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"MCP config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        if path.name == "pyproject.toml" or "tool" in data:
            data = data.get("tool", {}).get("quantlab", data)
        return data
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); expected {{\"mcpServers\": {{...}}}}") from None


def load_config(source: ConfigSource = None) -> dict[str, ServerConfig]:
    """Read server configs from a dict, a JSON/TOML file path, or (``None``) the cwd's config file.

    Accepts ``{"mcpServers": {...}}`` (also ``{"tool": {"quantlab": {"mcpServers": ...}}}``)
    or a bare ``{name: entry}`` mapping. Returns ``{name: ServerConfig}`` in file order;
    entries with ``"disabled": true`` are skipped. No source and no config file -> ``{}``.

    >>> list(load_config({"a": {"command": "x"}, "b": {"url": "http://h/mcp"}}))
    ['a', 'b']
    """
    if source is None:
        found = find_config_file()
        if found is None:
            return {}
        data: Mapping[str, Any] = _read_file(found)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_file(Path(source).expanduser())
    elif isinstance(source, Mapping):
        data = source
    else:
        raise TypeError(f"config must be a dict, a path or None, not {type(source).__name__}")
    if "tool" in data and "mcpServers" not in data:
        data = data["tool"].get("quantlab", {})
    servers = data.get("mcpServers", None)
    if servers is None:
        servers = {} if not data else data  # a bare {name: entry} mapping
    if not isinstance(servers, Mapping):
        raise ValueError(f"'mcpServers' must map server names to entries, got {type(servers).__name__}")
    return {
        str(name): ServerConfig.from_entry(str(name), entry)
        for name, entry in servers.items()
        if not (isinstance(entry, Mapping) and entry.get("disabled"))
    }
