"""Drives `witbox mcp` with the official Python MCP SDK (`mcp` on PyPI).

Run by `tests/all/mcp.rs`: python mcp_client.py WITBOX MANIFEST [URL]
With URL it talks streamable HTTP to a running server; without, it starts
`WITBOX --manifest MANIFEST mcp` and talks over stdio. Prints one JSON object
with what it saw; the Rust test checks it.
"""

import asyncio
import base64
import json
import sys

from mcp import Client, StdioServerParameters


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def main():
    witbox, manifest = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        server = sys.argv[3]
    else:
        server = StdioServerParameters(command=witbox, args=["--manifest", manifest, "mcp"])
    seen = {}
    async with Client(server, read_timeout_seconds=60) as client:
        seen["server"] = client.server_info.name
        seen["protocol"] = client.protocol_version
        seen["instructions"] = client.instructions
        tools = await client.list_tools()
        seen["tools"] = sorted(t.name for t in tools.tools)
        solve = next(t for t in tools.tools if t.name == "quadratic_solve")
        seen["quadratic_schema"] = solve.input_schema

        r = await client.call_tool("quadratic_solve", {"a": 1, "b": -3, "c": 2})
        seen["solve"] = {"is_error": r.is_error, "text": text(r), "structured": r.structured_content}

        r = await client.call_tool("quadratic_solve", {"a": "one"})
        seen["bad_args"] = {"is_error": r.is_error, "text": text(r)}

        r1 = await client.call_tool("run_python", {"code": "x = 20 + 1\nprint('set')"})
        sid = r1.structured_content["session_id"]
        r2 = await client.call_tool("run_python", {"code": "x * 2", "session_id": sid})
        seen["python"] = {
            "first": {"is_error": r1.is_error, "stdout": r1.structured_content["stdout"]},
            "second": {"is_error": r2.is_error, "value": r2.structured_content["value"], "text": text(r2)},
            "same_session": r2.structured_content["session_id"] == sid,
        }

        # With a progress callback (a `progressToken`), the output comes as it is
        # printed, in `notifications/progress`, before the result.
        notes = []

        async def on_progress(progress, total, message):
            notes.append({"progress": progress, "total": total, "message": message})

        r = await client.call_tool(
            "run_python",
            {"code": "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)"},
            progress_callback=on_progress,
        )
        seen["progress"] = {
            "at_result": "".join(n["message"] or "" for n in notes),
            "notes": notes,
            "stdout": r.structured_content["stdout"],
        }

        r = await client.call_tool("run_python", {"code": "import socket"})
        seen["denied"] = {"is_error": r.is_error, "text": text(r)}
        r = await client.call_tool("run_python", {"code": "open('/etc/passwd').read()"})
        seen["no_files"] = {"is_error": r.is_error, "error": r.structured_content["error"]}

        r = await client.call_tool("run_python", {"code": "1", "session_id": "s-0000000000000000"})
        seen["foreign_session"] = {"is_error": r.is_error, "text": text(r)}

        r = await client.call_tool("reset_session", {"session_id": sid})
        r3 = await client.call_tool("run_python", {"code": "x", "session_id": sid})
        seen["after_reset"] = {"is_error": r3.is_error, "type": r3.structured_content["error"]["type"]}

        # The SDK cancels a call that passes its timeout (`notifications/cancelled`);
        # the session keeps its id and its next run says it restarted.
        r = await client.call_tool("run_python", {"code": "kept = 7"})
        csid = r.structured_content["session_id"]
        try:
            await client.call_tool(
                "run_python", {"code": "while True: pass", "session_id": csid}, read_timeout_seconds=1
            )
            seen["cancel"] = {"raised": False}
        except Exception as e:  # the SDK's timeout
            r = await client.call_tool("run_python", {"code": "print('next')", "session_id": csid})
            seen["cancel"] = {
                "raised": True,
                "timeout": type(e).__name__,
                "is_error": r.is_error,
                "stdout": r.structured_content["stdout"],
                "restarted": r.structured_content["session_restarted"],
                "reason": r.structured_content.get("restart_reason"),
            }
        # Files in and out, binary-safe.
        blob = bytes(range(256))
        r = await client.call_tool(
            "write_file",
            {"path": "in/blob.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"},
        )
        fsid = r.structured_content["session_id"]
        r = await client.call_tool(
            "run_python",
            {"code": "d = open('/in/blob.bin','rb').read()\nopen('out.bin','wb').write(d[::-1])\nopen('note.txt','w').write('héllo')\nlen(d)", "session_id": fsid},
        )
        back = await client.call_tool("read_file", {"session_id": fsid, "path": "/out.bin"})
        note = await client.call_tool("read_file", {"session_id": fsid, "path": "note.txt"})
        listed = await client.call_tool("list_files", {"session_id": fsid})
        escape = await client.call_tool("read_file", {"session_id": fsid, "path": "../etc/passwd"})
        seen["files"] = {
            "value": r.structured_content["value"],
            "round_trip": base64.b64decode(back.structured_content["content"]) == blob[::-1],
            "encoding": back.structured_content["encoding"],
            "note": note.structured_content,
            "listed": [e["name"] for e in listed.structured_content["entries"]],
            "escape": text(escape),
        }

        r = await client.call_tool("close_session", {"session_id": csid})
        seen["close"] = {"is_error": r.is_error, "text": text(r)}

        try:
            r = await client.call_tool("no_such_tool", {})
            seen["unknown_tool"] = {"raised": False, "is_error": r.is_error, "text": text(r)}
        except Exception as e:  # a protocol error
            seen["unknown_tool"] = {"raised": True, "error": str(e)}
    print(json.dumps(seen))


asyncio.run(main())
