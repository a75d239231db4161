"""`regctl mcp` checked by someone else's implementation: the official MCP Python SDK.

Starts a real regd on a free loopback port, then drives `regctl mcp` with the SDK's
stdio client: initialize, list_tools, every tool (each structured answer validated
against the outputSchema the server advertised, by the SDK and again here with
jsonschema), list/read resources, and a subscription notified by a change that
`regctl provide` applies for `regctl set`. Then the SDK's high-level client in its
default "auto" mode, which probes the 2026 `server/discover` first and must fall back
to the initialize handshake. Every wait has a deadline; any failure exits non-zero.

usage: python sdk_client.py PATH/TO/regd PATH/TO/regctl
"""

import json
import os
import subprocess
import sys
import threading
import traceback
import urllib.request

import anyio
import jsonschema
import mcp_types as types
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

PATIENCE = 20  # seconds any single wait may take
REGD, REGCTL = sys.argv[1], sys.argv[2]
checks = []
# What the child processes inherit: nothing that changes how regd or regctl behave.
CLEAN = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith("REGD_")
    and key not in ("REGISTRY", "JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")
}


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    checks.append(what)


def start_regd():
    regd = subprocess.Popen(
        [REGD, "--addr", "127.0.0.1:0"],
        env=CLEAN,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    announced = []
    reader = threading.Thread(target=lambda: announced.append(regd.stdout.readline()))
    reader.start()
    reader.join(PATIENCE)
    line = announced[0] if announced else ""
    if not line.startswith("listening on http://"):
        regd.kill()
        raise AssertionError(f"regd did not announce its address: {line!r}")
    return regd, line.strip().removeprefix("listening on ")


def http(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=PATIENCE) as answer:
        text = answer.read().decode()
        return json.loads(text) if text else None


def regctl(url, *args, stdin=subprocess.DEVNULL):
    return subprocess.Popen(
        [REGCTL, "--registry", url, *args],
        env=CLEAN,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def until(what, condition):
    with anyio.fail_after(PATIENCE):
        while not condition():
            await anyio.sleep(0.005)  # sleep-ok: polling a deadline
    checks.append(what)


def text_of(result):
    return result.content[0].text


async def call(session, schemas, name, arguments):
    """A tool call that must succeed, its structured content validated here too."""
    result = await session.call_tool(name, arguments)
    check(not result.is_error, f"{name} succeeds: {text_of(result)}")
    check(result.structured_content is not None, f"{name} gives structured content")
    jsonschema.validate(result.structured_content, schemas[name])
    checks.append(f"{name}'s structured content matches its outputSchema")
    check(text_of(result), f"{name} gives text too")
    return result.structured_content, text_of(result)


async def with_session(url):
    updates = []

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    server = StdioServerParameters(command=REGCTL, args=["mcp"], env={"REGISTRY": url})
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            with anyio.fail_after(PATIENCE):
                init = await session.initialize()
            check(init.protocol_version == "2025-11-25", "protocol 2025-11-25 negotiated")
            check(init.server_info.name == "reg-registry", "server name reg-registry")
            check(init.capabilities.resources.subscribe, "resources.subscribe declared")
            check(init.capabilities.resources.list_changed, "resources.listChanged declared")
            check(init.capabilities.tools is not None, "tools declared")
            check(init.capabilities.prompts is None, "no prompts declared")

            listed = await session.list_tools()
            schemas = {tool.name: tool.output_schema for tool in listed.tools}
            check(
                sorted(schemas)
                == sorted(
                    [
                        "get_register",
                        "list_registers",
                        "wait_for_change",
                        "request_change",
                        "set_register",
                        "delete_register",
                    ]
                ),
                "list_tools gives the six tools",
            )
            for tool in listed.tools:
                jsonschema.Draft202012Validator.check_schema(tool.input_schema)
                jsonschema.Draft202012Validator.check_schema(tool.output_schema)
                reads = tool.name in ("get_register", "list_registers", "wait_for_change")
                check(
                    tool.annotations.read_only_hint == reads,
                    f"{tool.name} readOnlyHint is {reads}",
                )

            http(url, "PUT", "/provider", {"registers": {
                "hall.temperature": {"value": 21.5, "metadata": {"unit": "°C"}, "ttl": "60s"},
            }})
            got, text = await call(session, schemas, "get_register", {"name": "hall.temperature"})
            check(got["value"] == 21.5 and got["metadata"] == {"unit": "°C"}, "get_register value")
            check(got["ttl"] == "1m0s" and 0 < got["expires_in_ms"] <= 60000, "get_register ttl")
            missing = await session.call_tool("get_register", {"name": "nope"})
            check(missing.is_error and "does not exist" in text_of(missing), "missing is a tool error")
            try:
                await session.call_tool("get_register", {"name": 7})
                check(False, "an ill-typed argument is refused")
            except MCPError as error:
                check(error.code == -32602 and "arguments.name must be a string" in error.error.message,
                      f"an ill-typed argument is -32602 naming it: {error.error.message}")

            listing, _ = await call(session, schemas, "list_registers", {"prefix": "hall."})
            check(listing["total"] == 1 and listing["left_out"] == 0, "list_registers by prefix")

            published, _ = await call(
                session, schemas, "set_register", {"name": "desk.note", "value": "\"hi\"", "ttl": "1m"}
            )
            check(published["ttl"] == "1m0s", "set_register ttl")
            check(http(url, "GET", "/consumer?name=desk.note")["registers"]["desk.note"]["value"] == "hi",
                  "set_register published")
            deleted, _ = await call(session, schemas, "delete_register", {"name": "desk.note"})
            check(deleted["existed"] is True, "delete_register")

            # A provider that applies change requests, started with regctl.
            provider = regctl(url, "provide", "lamp", "false", stdin=subprocess.PIPE)
            try:
                await until("regctl provide published lamp", lambda: "lamp" in http(
                    url, "GET", "/consumer?name=lamp")["registers"])
                changed, text = await call(
                    session, schemas, "request_change", {"name": "lamp", "value": True}
                )
                check(changed["status"] == "applied" and text.startswith("applied"), "request_change applied")

                resources = await session.list_resources()
                uris = sorted(str(resource.uri) for resource in resources.resources)
                check(uris == ["reg://hall.temperature", "reg://lamp"], f"list_resources: {uris}")
                read = await session.read_resource("reg://hall.temperature")
                check(json.loads(read.contents[0].text) == {"value": 21.5, "metadata": {"unit": "°C"}},
                      "read_resource gives the register as JSON")
                check(read.contents[0].mime_type == "application/json", "read_resource is JSON")

                # A subscription notified of a change that regctl set asks for.
                await session.subscribe_resource("reg://lamp")
                setter = regctl(url, "set", "lamp", "false")
                with anyio.fail_after(PATIENCE):
                    check(await anyio.to_thread.run_sync(setter.wait) == 0, "regctl set applied")
                await until("notifications/resources/updated for reg://lamp",
                            lambda: "reg://lamp" in updates)
                read = await session.read_resource("reg://lamp")
                check(json.loads(read.contents[0].text) == {"value": False}, "read after the update")

                # wait_for_change: one long poll that a change wakes.
                quiet, _ = await call(session, schemas, "wait_for_change",
                                      {"names": ["lamp"], "wait": "100ms"})
                check(quiet["timed_out"] is True, "wait_for_change times out quietly")
                results = {}

                async def wait():
                    results["wait"] = await call(session, schemas, "wait_for_change",
                                                 {"names": ["lamp"], "wait": "30s", "index": quiet["index"]})

                async with anyio.create_task_group() as group:
                    group.start_soon(wait)
                    # Before or during the long poll: with the index, the answer is the same.
                    setter = regctl(url, "set", "lamp", "true")
                    await anyio.to_thread.run_sync(setter.wait)
                woken, _ = results["wait"]
                check(woken["changed"] == [{"name": "lamp", "value": True, "metadata": None}],
                      "wait_for_change reports the change")
            finally:
                provider.stdin.close()
                provider.wait(PATIENCE)


async def with_auto_client(url):
    """The SDK's high-level client, default mode: probe, then fall back to initialize."""
    server = StdioServerParameters(command=REGCTL, args=["mcp", "--read-only"], env={"REGISTRY": url})
    with anyio.fail_after(PATIENCE):
        async with Client(server) as client:
            check(client.protocol_version == "2025-11-25", "auto mode falls back to the handshake")
            names = sorted(tool.name for tool in (await client.list_tools()).tools)
            check(names == ["get_register", "list_registers", "wait_for_change"], "--read-only tools")
            result = await client.call_tool("get_register", {"name": "hall.temperature"})
            check(result.structured_content["value"] == 21.5, "auto client calls a tool")


async def main():
    regd, url = start_regd()
    try:
        await with_session(url)
        await with_auto_client(url)
    finally:
        regd.kill()
        regd.wait()


if __name__ == "__main__":
    try:
        anyio.run(main)
    except BaseException as error:  # noqa: BLE001 - report any failure, then exit 1
        traceback.print_exception(error)
        print(f"mcp sdk: FAILED after {len(checks)} checks", file=sys.stderr)
        print(f"mcp: {len(checks)} passed, 1 failed")
        sys.exit(1)
    print(f"mcp: {len(checks)} passed, 0 failed")
