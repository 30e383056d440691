"""Reduce an MCP tool's JSON schemas to what a client depends on (names, types, required, wrapping).

Used by the conformance tests to compare the paper broker with the public MT5 MCP server
(``/work/shared/mt5-reference/mcp_mt5_tools.json``) and with ``mt5mcp`` itself. Titles,
descriptions and defaults are prose and left out; ``$ref`` is resolved.
"""
from __future__ import annotations

from typing import Any


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def shape(node: Any) -> Any:
    """The type skeleton of a (resolved) schema node."""
    if not isinstance(node, dict):
        return node
    if "anyOf" in node:
        return {"anyOf": sorted((shape(n) for n in node["anyOf"]), key=repr)}
    out: dict[str, Any] = {}
    for key in ("type", "format"):
        if key in node:
            out[key] = node[key]
    if node.get("type") == "object" or "properties" in node:
        props = node.get("properties")
        if props is not None:
            out["properties"] = {k: shape(v) for k, v in props.items()}
            out["required"] = sorted(node.get("required", []))
        if "additionalProperties" in node:
            out["additionalProperties"] = node["additionalProperties"] if isinstance(node["additionalProperties"], bool) \
                else shape(node["additionalProperties"])
    if "items" in node:
        out["items"] = shape(node["items"])
    return out


def tool_shape(input_schema: dict[str, Any] | None, output_schema: dict[str, Any] | None) -> dict[str, Any]:
    """``{"input": ..., "output": ..., "wrapped": bool}`` for one tool."""
    ins = _resolve(input_schema or {}, (input_schema or {}).get("$defs", {}))
    outs = _resolve(output_schema or {}, (output_schema or {}).get("$defs", {}))
    props = list((outs or {}).get("properties") or {})
    wrapped = bool(outs) and props == ["result"] and (outs.get("x-fastmcp-wrap-result") is True)
    return {"input": shape(ins), "output": shape(outs) if outs else None, "wrapped": wrapped}
