"""Resource limits of one sandboxed run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

__all__ = ["SandboxLimits"]


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed strategy process.

    * ``cpu_seconds`` - CPU time (``RLIMIT_CPU``); beyond it the process is stopped;
    * ``memory_mb`` - address space (``RLIMIT_AS``, includes the ~0.4 GB numpy/pandas
      already mapped); beyond it allocations fail with ``MemoryError``;
    * ``processes`` - processes the strategy may start: ``0`` (fork, exec and
      ``subprocess`` are refused; nothing else is supported);
    * ``output_bytes`` - what it may print (stdout + stderr, captured into a log);
    * ``wall_seconds`` - wall-clock time of the whole run (many combinations in a sweep
      share it); the process is killed when it runs out.

    Example
    -------
    >>> SandboxLimits(cpu_seconds=5).cpu_seconds
    5.0
    >>> SandboxLimits.coerce({"memory_mb": 1024}).memory_mb
    1024
    """

    cpu_seconds: float = 120.0
    memory_mb: int = 4096
    processes: int = 0
    output_bytes: int = 1_000_000
    wall_seconds: float = 300.0

    def __post_init__(self) -> None:
        for f in ("cpu_seconds", "wall_seconds"):
            v = float(getattr(self, f))
            if not v > 0:
                raise ValueError(f"SandboxLimits.{f} must be a positive number of seconds, got {v!r}.")
            object.__setattr__(self, f, v)
        for f in ("memory_mb", "output_bytes"):
            v = int(getattr(self, f))
            if v <= 0:
                raise ValueError(f"SandboxLimits.{f} must be positive, got {v!r}.")
            object.__setattr__(self, f, v)
        if int(self.processes) != 0:
            raise ValueError("SandboxLimits.processes: strategy code may start no processes (only 0 is supported).")
        object.__setattr__(self, "processes", 0)

    @classmethod
    def coerce(cls, limits: "SandboxLimits | Mapping[str, Any] | None") -> "SandboxLimits":
        """``None`` -> defaults; a mapping -> those fields over the defaults; a ``SandboxLimits`` -> itself."""
        if limits is None:
            return cls()
        if isinstance(limits, cls):
            return limits
        if isinstance(limits, Mapping):
            known = {f.name for f in fields(cls)}
            bad = sorted(set(limits) - known)
            if bad:
                raise ValueError(f"unknown sandbox limit(s) {bad}; known: {sorted(known)}.")
            return cls(**{k: v for k, v in limits.items() if v is not None})
        raise TypeError(f"limits must be a SandboxLimits or a dict, got {type(limits).__name__}.")

    def replace(self, **changes: Any) -> "SandboxLimits":
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in self.to_dict().items())
        return f"<div><b>SandboxLimits</b><table>{rows}</table></div>"
