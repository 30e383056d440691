"""A hand-written stdio MCP server that misbehaves on request (the SDK's own server guards its stdout,
so a broken server has to be written by hand): ``garbage`` answers with a line that is not JSON-RPC;
``big`` answers with ``mb`` megabytes; ``ok`` answers at once."""
from __future__ import annotations

import json
import sys

TOOLS = [
    {"name": "garbage", "description": "Answer with a line that is not JSON-RPC.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "big", "description": "A reply of about mb megabytes.",
     "inputSchema": {"type": "object", "properties": {"mb": {"type": "number"}}, "required": ["mb"]}},
    {"name": "ok", "description": "Answer at once.", "inputSchema": {"type": "object", "properties": {}}},
]


def send(obj) -> None:
    sys.stdout.buffer.write(json.dumps(obj).encode() + b"\n")
    sys.stdout.buffer.flush()


def text(value: str) -> dict:
    return {"content": [{"type": "text", "text": value}], "isError": False}


for line in sys.stdin.buffer:
    msg = json.loads(line)
    if "id" not in msg:
        continue  # notifications
    method, mid = msg.get("method"), msg["id"]
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
            "serverInfo": {"name": "quantlab-bad", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = msg["params"]["name"]
        if name == "garbage":
            sys.stdout.buffer.write(b'{"jsonrpc": "2.0", "id": ' + str(mid).encode() + b', "result": this is not json\n')
            sys.stdout.buffer.flush()
        elif name == "big":
            send({"jsonrpc": "2.0", "id": mid, "result": text("x" * int(msg["params"]["arguments"]["mb"] * 1024 * 1024))})
        else:
            send({"jsonrpc": "2.0", "id": mid, "result": text("ok")})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": f"no method {method}"}})
