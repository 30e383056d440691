"""Server configuration in the ``mcpServers`` shape MCP users already write.

::

    {"mcpServers": {
        "time":     {"command": "python", "args": ["-m", "mcp_server_time"], "env": {}, "cwd": null},
        "remote":   {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}
    }}

read from a dict, a JSON file, or (with no source) ``quantlab.toml`` / ``pyproject.toml``
``[tool.quantlab]`` (key ``mcpServers``) in the current directory.
``${VAR}`` in header values and env values is expanded from the environment.

A server may carry ``on_connect``: tool calls run in order after every (re)connect, e.g. an MT5
server's ``initialize`` and ``login``::

    "broker": {"command": "mt5mcp", "on_connect": [
        {"tool": "initialize", "arguments": {"path": "C:/Program Files/MetaTrader 5/terminal64.exe"}},
        {"tool": "login", "arguments": {"login": 123, "password": "${MT5_PASSWORD}", "server": "Demo"}}]}

Their ``${VAR}`` are kept as written and read from the environment only at connect time
(:meth:`OnConnectCall.resolve`), so a secret is never stored, printed or shown in a repr.
A stdio server starts with a scrubbed environment; ``"inherit_env": ["MT5_PASSWORD"]`` hands it
those variables from this process when it is spawned (for a server that itself connects onward,
like quantlab's runner), again without storing their values.

Example
-------
>>> cfg = load_config({"mcpServers": {"t": {"command": "python", "args": ["-m", "mcp_server_time"]}}})
>>> cfg["t"].transport, cfg["t"].target
('stdio', 'python -m mcp_server_time')
"""
from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ServerConfig", "OnConnectCall", "load_config", "find_config_file"]

ConfigSource = Mapping[str, Any] | str | os.PathLike[str] | None
_KIND_ALIASES = {"streamable-http": "http", "streamableHttp": "http", "streamable_http": "http"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingVariableError(KeyError):
    """An ``on_connect`` argument names ``${VAR}`` and the environment has no ``VAR``."""

    def __init__(self, variable: str):
        super().__init__(variable)
        self.variable = variable

    def __str__(self) -> str:
        return f"environment variable {self.variable} is not set"


def _template_vars(x: Any) -> list[str]:
    if isinstance(x, str):
        return _VAR.findall(x)
    if isinstance(x, Mapping):
        return [v for item in x.values() for v in _template_vars(item)]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _template_vars(item)]
    return []


def _expand(x: Any, env: Mapping[str, str], used: list[str]) -> Any:
    if isinstance(x, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise MissingVariableError(name)
            used.append(env[name])
            return env[name]

        return _VAR.sub(sub, x)
    if isinstance(x, Mapping):
        return {k: _expand(v, env, used) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_expand(v, env, used) for v in x]
    return x


@dataclass(frozen=True)
class OnConnectCall:
    """One tool call a server runs after every (re)connect; arguments keep their ``${VAR}`` templates.

    >>> c = OnConnectCall.from_entry("b", 0, {"tool": "login", "arguments": {"login": 1, "password": "${PW}"}})
    >>> c
    OnConnectCall(tool='login', arguments={'login': 1, 'password': '${PW}'})
    >>> args, secrets = c.resolve({"PW": "hunter2"})
    >>> args["password"], secrets
    ('hunter2', ['hunter2'])
    """

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, server: str, index: int, entry: Any) -> "OnConnectCall":
        where = f"server {server!r}: on_connect[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("tool"), str) or not entry.get("tool"):
            raise ValueError(f"{where} must be {{\"tool\": NAME, \"arguments\": {{...}}}}, got {_shape(entry)}")
        unknown = set(entry) - {"tool", "arguments"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: ['arguments', 'tool'])")
        args = entry.get("arguments") or {}
        if not isinstance(args, Mapping):
            raise ValueError(f"{where}: 'arguments' must be an object, got {type(args).__name__}")
        return cls(tool=entry["tool"], arguments=dict(args))

    @property
    def variables(self) -> list[str]:
        """The environment variables this call reads, e.g. ``['MT5_PASSWORD']``."""
        return _template_vars(self.arguments)

    def resolve(self, environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
        """``(arguments with ${VAR} read from the environment now, the values substituted)``.

        The second item lets callers scrub those values from any text they show.
        Raises :class:`MissingVariableError` naming a variable that is not set.
        """
        used: list[str] = []
        args = _expand(dict(self.arguments), os.environ if environ is None else environ, used)
        return args, [u for u in used if u]

    def to_entry(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": dict(self.arguments)}


def _shape(x: Any) -> str:
    """A value's type (never its content: on_connect entries may hold secrets)."""
    return type(x).__name__


#: the default ``max_message_bytes`` of a server: one message (line) from a stdio server larger
#: than this is refused without being parsed (a 100k-bar page of a backtest is about 16 MB)
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)


def parse_size(value: Any, what: str = "max_message_bytes") -> int:
    """Bytes from ``1048576``, ``"512kB"``, ``"64MB"``, ``"1 GiB"`` (powers of 1024).

    >>> parse_size("64MB"), parse_size(100_000), parse_size("1.5 kib")
    (67108864, 100000, 1536)
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a size such as 67108864 or '64MB', got {value!r}")
    if isinstance(value, (int, float)):
        n = int(value)
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise ValueError(f"{what} must be a size such as 67108864 or '64MB', got {value!r}")
        unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
        n = int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit])
    if n < 1024:
        raise ValueError(f"{what} must be at least 1024 bytes, got {value!r}")
    return n


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
    on_connect: tuple[OnConnectCall, ...] = ()
    inherit_env: tuple[str, ...] = ()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

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
        known = {"command", "args", "env", "cwd", "url", "headers", "type", "transport", "description", "disabled",
                 "on_connect", "max_message_bytes", "inherit_env"}
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
        calls = entry.get("on_connect") or []
        if isinstance(calls, (str, Mapping)) or not isinstance(calls, (list, tuple)):
            raise ValueError(f"server {name!r}: 'on_connect' must be a list of {{\"tool\": ..., \"arguments\": {{...}}}}, "
                             f"got {type(calls).__name__}")
        on_connect = tuple(OnConnectCall.from_entry(name, i, c) for i, c in enumerate(calls))
        inherit = entry.get("inherit_env") or []
        if isinstance(inherit, str) or not all(isinstance(v, str) and _NAME.fullmatch(v) for v in inherit):
            raise ValueError(f"server {name!r}: 'inherit_env' must be a list of environment variable names, got {inherit!r}")
        return cls(
            name=name,
            command=str(entry["command"]) if has_cmd else None,
            args=tuple(str(a) for a in args),
            env=env,
            cwd=str(Path(cwd).expanduser()) if cwd else None,
            url=str(entry["url"]) if has_url else None,
            headers=headers,
            kind=kind,
            on_connect=on_connect,
            max_message_bytes=parse_size(entry["max_message_bytes"], f"server {name!r}: max_message_bytes")
            if entry.get("max_message_bytes") is not None else DEFAULT_MAX_MESSAGE_BYTES,
            inherit_env=tuple(inherit),
        )

    def to_entry(self) -> dict[str, Any]:
        """Back to the ``mcpServers`` JSON shape (``on_connect`` keeps its ``${VAR}`` templates)."""
        if self.url:
            out: dict[str, Any] = {"url": self.url}
            if self.kind:
                out["transport"] = self.kind
            if self.headers:
                out["headers"] = dict(self.headers)
        else:
            out = {"command": self.command, "args": list(self.args)}
            if self.kind:
                out["transport"] = self.kind
            if self.env:
                out["env"] = dict(self.env)
            if self.cwd:
                out["cwd"] = self.cwd
            if self.inherit_env:
                out["inherit_env"] = list(self.inherit_env)
        if self.on_connect:
            out["on_connect"] = [c.to_entry() for c in self.on_connect]
        if self.max_message_bytes != DEFAULT_MAX_MESSAGE_BYTES:
            out["max_message_bytes"] = self.max_message_bytes
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
