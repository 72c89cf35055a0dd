"""Sessions across `witbox mcp` processes, through the official Python MCP SDK.

Run by `tests/all/snapshots.rs`: python mcp_sessions.py WITBOX MANIFEST STATE_DIR
Prints one JSON object with what it saw.
"""

import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def main():
    witbox, manifest, state = sys.argv[1], sys.argv[2], sys.argv[3]

    def server(*extra):
        return StdioServerParameters(
            command=witbox, args=["--manifest", manifest, "mcp", *extra], env=dict(os.environ)
        )

    seen = {}
    # One process makes a session and saves it; another restores it.
    async with Client(server(), read_timeout_seconds=60) as client:
        r = await client.call_tool("write_file", {"path": "m.txt", "content": "moved"})
        sid = r.structured_content["session_id"]
        await client.call_tool("run_python", {"code": "x = 41", "session_id": sid})
        snap = (await client.call_tool("snapshot_session", {"session_id": sid})).structured_content
    async with Client(server(), read_timeout_seconds=60) as client:
        r = await client.call_tool("restore_session", {"snapshot": snap["snapshot"]})
        new = r.structured_content["session_id"]
        r2 = await client.call_tool(
            "run_python", {"code": "x + 1, open('m.txt').read()", "session_id": new}
        )
        seen["moved"] = {
            "value": r2.structured_content["value"],
            "not_restored": r.structured_content["not_restored"],
        }

    # LangChain's habit: a new server process per call, with a state dir.
    per_call, sid = [], None
    for code in ["x = 1\nx", "x += 1\nx", "x += 1\nx"]:
        async with Client(server("--state-dir", state), read_timeout_seconds=60) as client:
            args = {"code": code}
            if sid:
                args["session_id"] = sid
            r = await client.call_tool("run_python", args)
            sid = r.structured_content["session_id"]
            per_call.append(r.structured_content.get("value") or text(r))
    seen["per_call"] = per_call

    async with Client(server("--state-dir", state), read_timeout_seconds=60) as client:
        await client.call_tool("close_session", {"session_id": sid})
    async with Client(server("--state-dir", state), read_timeout_seconds=60) as client:
        r = await client.call_tool("run_python", {"code": "x", "session_id": sid})
        seen["after_close"] = text(r)
    seen["state_files_after_close"] = len([f for f in os.listdir(state) if f.endswith(".snap")])
    print(json.dumps(seen))


asyncio.run(main())
