"""Tool call results and argument checks: unwrapping ``{"result": x}``, text content, and the
:class:`ArgumentsError` that names the bad argument against the tool's input schema.

>>> wraps_result("get_symbols", {"title": "get_symbolsOutput", "properties": {"result": {}}})
True
"""
from __future__ import annotations

from typing import Any, Mapping

from ._errors import ArgumentsError

__all__ = ["wraps_result", "call_value", "call_text", "as_is", "import_jsonschema", "make_validator", "arguments_error"]


def as_is(x: Any) -> Any:
    return x  # an argument JSON cannot carry is left for the schema check to name


def wraps_result(tool: str, output_schema: Mapping[str, Any] | None) -> bool:
    """Whether a tool's structured result is ``{"result": x}`` wrapping the real value ``x``.

    Both SDKs wrap returns that are not objects (lists, booleans, optional objects): the
    MCP SDK names the schema ``<tool>Output``, FastMCP marks it ``x-fastmcp-wrap-result``.

    >>> wraps_result("positions_get", {"type": "object", "properties": {"result": {"type": "array"}},
    ...                                "x-fastmcp-wrap-result": True})
    True
    >>> wraps_result("get_symbols", {"title": "get_symbolsOutput", "properties": {"result": {}}})
    True
    >>> wraps_result("get_account_info", {"properties": {"result": {}, "balance": {}}})
    False
    """
    out = output_schema or {}
    if list(out.get("properties") or {}) != ["result"]:
        return False
    return out.get("x-fastmcp-wrap-result") is True or out.get("title") == f"{tool}Output"


def call_value(result: Any, unwrap: bool) -> Any:
    """A successful call result as plain Python: the structured content (unwrapped) or the text."""
    sc = result.structured_content
    if sc is not None:
        if unwrap and isinstance(sc, dict) and len(sc) == 1 and "result" in sc:
            return sc["result"]
        return sc
    return _content(result)


def import_jsonschema() -> Any:
    """``jsonschema``, imported without its optional ``rfc3987_syntax`` format checks.

    That module builds a grammar at import time (2+ s of CPU; 10 s on a busy machine) for the
    ``iri`` formats, which the client never checks (``format_checker=None``): every CLI command
    and server start paid for it. It is hidden only while jsonschema imports.
    """
    import sys

    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import jsonschema

        return jsonschema
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment] - makes its import fail (suppressed)
    try:
        import jsonschema
    finally:
        del sys.modules["rfc3987_syntax"]
    return jsonschema


def make_validator(schema: Mapping[str, Any] | None) -> Any:
    """A jsonschema validator for a tool's input schema, or ``False`` when there is none (or it is odd).

    >>> make_validator({"type": "object", "properties": {"n": {"type": "integer"}}}).is_valid({"n": "x"})
    False
    >>> make_validator(None)
    False
    """
    if not schema:
        return False
    try:
        jsonschema = import_jsonschema()
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema, format_checker=None)
    except Exception:  # noqa: BLE001 - a server's odd schema must not block calls
        return False


def call_text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content if getattr(c, "type", None) == "text").strip()


def _content(result: Any) -> Any:
    blocks = result.content
    if not blocks:
        return None
    if all(getattr(c, "type", None) == "text" for c in blocks):
        return "\n".join(c.text for c in blocks)
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in blocks]


def arguments_error(server: str, tool: str, validator: Any, args: Mapping[str, Any]) -> ArgumentsError:
    import_jsonschema()
    from jsonschema.exceptions import best_match

    errors = list(validator.iter_errors(args))
    best = best_match(errors)
    field_name = ".".join(str(p) for p in best.absolute_path)
    if best.validator == "required" and isinstance(best.instance, Mapping):
        missing = [r for r in best.validator_value if r not in best.instance]
        field_name = ".".join([*(str(p) for p in best.absolute_path), *(missing[:1])])
        problem = f"missing required argument {field_name!r}"
    elif best.validator == "additionalProperties" and isinstance(best.instance, Mapping):
        extra = [k for k in best.instance if k not in (best.schema.get("properties") or {})]
        field_name = ".".join([*(str(p) for p in best.absolute_path), *(extra[:1])])
        problem = f"unexpected argument {field_name!r}"
    else:
        expected = {k: v for k, v in best.schema.items() if k in ("type", "enum", "minimum", "maximum", "pattern", "format")}
        problem = f"argument {field_name or '<arguments>'!r}: {best.message}" + (f" (expected {expected})" if expected else "")
    props = list((validator.schema.get("properties") or {}).keys())
    msg = (
        f"invalid arguments for tool {tool!r} on server {server!r}: {problem}. Nothing was sent. "
        f"The tool takes: {props}; see hub.tools({server!r}) for the schema."
    )
    return ArgumentsError(msg, server=server, tool=tool, field=field_name, errors=[e.message for e in errors])
