// Drives `witbox mcp` with the official TypeScript MCP SDK (`@modelcontextprotocol/sdk`).
//
// Run by `tests/all/mcp.rs`: node mcp_client.mjs WITBOX MANIFEST [URL]
// With URL it talks streamable HTTP to a running server; without, it starts
// `WITBOX --manifest MANIFEST mcp` and talks over stdio. Prints one JSON object
// with what it saw; the Rust test checks it. `cargo xtask test` installs the
// pinned SDK (package-lock.json) into tests/node/node_modules.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [witbox, manifest, url] = process.argv.slice(2);

function text(result) {
  return result.content.map((c) => c.text ?? "").join("");
}

// What a rejected call threw, in the SDK's own terms.
function thrown(e) {
  return { name: e.constructor.name, code: e.code, message: e.message, data: e.data ?? null };
}

// The SDK's default environment for a stdio server is a short safe list; the
// tests' compile cache is passed on so the server does not compile the runner.
const env = process.env.WITBOX_CACHE_DIR ? { WITBOX_CACHE_DIR: process.env.WITBOX_CACHE_DIR } : {};
const transport = url
  ? new StreamableHTTPClientTransport(new URL(url))
  : new StdioClientTransport({ command: witbox, args: ["--manifest", manifest, "mcp"], env, stderr: "inherit" });
const client = new Client({ name: "witbox-node-test", version: "1.0.0" });
// A response the SDK did not expect (say, one for a request it cancelled) lands here.
const transportErrors = [];
client.onerror = (e) => transportErrors.push(String(e));
await client.connect(transport);

const seen = {};
seen.transport = url ? "streamable-http" : "stdio";
seen.server = client.getServerVersion().name;
seen.protocol = transport.protocolVersion ?? null; // only the HTTP transport keeps it
seen.has_instructions = (client.getInstructions() ?? "").length > 0;
seen.http_session = url ? typeof transport.sessionId === "string" && transport.sessionId.length > 0 : null;

const { tools } = await client.listTools();
seen.tools = tools.map((t) => t.name).sort();
seen.quadratic_schema = tools.find((t) => t.name === "quadratic_solve").inputSchema;

let r = await client.callTool({ name: "quadratic_solve", arguments: { a: 1, b: -3, c: 2 } });
seen.solve = { is_error: r.isError ?? false, text: text(r), structured: r.structuredContent };

// Two runs in one session: `x` is kept.
const r1 = await client.callTool({ name: "run_python", arguments: { code: "x = 20 + 1\nprint('set')" } });
const sid = r1.structuredContent.session_id;
const r2 = await client.callTool({ name: "run_python", arguments: { code: "x * 2", session_id: sid } });
seen.python = {
  session_id: sid,
  first: { is_error: r1.isError ?? false, stdout: r1.structuredContent.stdout },
  second: { is_error: r2.isError ?? false, value: r2.structuredContent.value, text: text(r2) },
  same_session: r2.structuredContent.session_id === sid,
};

// An endless loop that the SDK stops (`options` holds an abort signal or a
// timeout; it then sends `notifications/cancelled`), then `after` on the same
// id: it runs at once, in the session restarted from the last completed cell.
async function stopped(options, after) {
  const started = Date.now();
  let outcome;
  try {
    const r = await client.callTool(
      { name: "run_python", arguments: { code: "while True: pass", session_id: sid } },
      undefined,
      options,
    );
    outcome = { rejected: false, is_error: r.isError ?? false, text: text(r) };
  } catch (e) {
    outcome = { rejected: true, error: thrown(e) };
  }
  outcome.waited_ms = Date.now() - started;
  const again = Date.now();
  const next = await client.callTool({ name: "run_python", arguments: { code: after, session_id: sid } });
  outcome.next_ms = Date.now() - again;
  const s = next.structuredContent;
  outcome.next = {
    is_error: next.isError ?? false,
    session_id_kept: s.session_id === sid,
    value: s.value,
    session_restarted: s.session_restarted,
    restart_reason: s.restart_reason ?? null,
    globals_restored: s.globals_restored ?? false,
    text: text(next),
  };
  return outcome;
}

const controller = new AbortController();
const abort = setTimeout(() => controller.abort(), 300);
seen.abort = await stopped({ signal: controller.signal }, "x + 1");
clearTimeout(abort);
await client.callTool({ name: "run_python", arguments: { code: "y = x * 3", session_id: sid } });
seen.timeout = await stopped({ timeout: 500 }, "(x, y)");

// Files in and out, binary-safe.
const blob = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
r = await client.callTool({
  name: "write_file",
  arguments: { session_id: sid, path: "in/blob.bin", content: blob.toString("base64"), encoding: "base64" },
});
seen.write = { is_error: r.isError ?? false, structured: r.structuredContent };
r = await client.callTool({
  name: "run_python",
  arguments: { code: "d = open('/in/blob.bin','rb').read()\nopen('out.bin','wb').write(d[::-1])\nlen(d)", session_id: sid },
});
const back = await client.callTool({ name: "read_file", arguments: { session_id: sid, path: "/out.bin" } });
const same = await client.callTool({ name: "read_file", arguments: { session_id: sid, path: "in/blob.bin" } });
seen.files = {
  value: r.structuredContent.value,
  encoding: back.structuredContent.encoding,
  size: back.structuredContent.size,
  reversed: Buffer.from(back.structuredContent.content, "base64").equals(Buffer.from(blob).reverse()),
  round_trip: Buffer.from(same.structuredContent.content, "base64").equals(blob),
};

r = await client.callTool({ name: "close_session", arguments: { session_id: sid } });
const after = await client.callTool({ name: "run_python", arguments: { code: "x", session_id: sid } });
seen.close = { is_error: r.isError ?? false, text: text(r), after_is_error: after.isError ?? false, after: text(after) };

seen.transport_errors = transportErrors;
if (url) {
  // DELETE with the Mcp-Session-Id ends the MCP session; a request that still
  // names it is refused.
  const old = transport.sessionId;
  await transport.terminateSession();
  const stale = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": old,
      "mcp-protocol-version": transport.protocolVersion,
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 99, method: "tools/list" }),
  });
  seen.after_delete = { status: stale.status, body: await stale.text() };
}
await client.close();
// fetch keeps idle connections open for a few seconds, and node would wait for
// them: exit once the line is written.
process.stdout.write(JSON.stringify(seen) + "\n", () => process.exit(0));
