"""Captures the example conversation of docs/regctl.md against a real regd.

A user's requests (written here) are answered by tool calls through the official MCP
Python SDK, standing in for the assistant; what regctl mcp answers is printed verbatim
as markdown. Devices are real `regctl provide` processes: a lamp that applies change
requests, a garage door that is read-only, a hall sensor fed new readings on stdin.

usage: python transcript.py PATH/TO/regd PATH/TO/regctl > transcript.md
"""

import json
import subprocess
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from sdk_client import PATIENCE, http, regctl, start_regd, until

REGCTL = sys.argv[2]


def show(request, tool, arguments, result):
    print(f"**User:** {request}\n")
    print(f"The assistant calls `{tool}` with `{json.dumps(arguments, ensure_ascii=False)}`;"
          f" regctl mcp answers{' (isError)' if result.is_error else ''}:\n")
    print("```")
    print(result.content[0].text)
    print("```\n")
    return result


async def main():
    regd, url = start_regd()
    devices = [
        regctl(url, "provide", "hall.temperature", "21.5", '{"unit": "°C"}', "--ttl", "30s",
               stdin=subprocess.PIPE),
        regctl(url, "provide", "hall.humidity", "48", '{"unit": "%"}', stdin=subprocess.PIPE),
        regctl(url, "provide", "kitchen.lamp", "false", stdin=subprocess.PIPE),
        regctl(url, "provide", "garage.door", '"closed"', "--read-only", stdin=subprocess.PIPE),
    ]
    try:
        await until("devices", lambda: len(http(url, "GET", "/consumer")["registers"]) == 4)
        server = StdioServerParameters(command=REGCTL, args=["mcp"], env={"REGISTRY": url})
        async with stdio_client(server) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(PATIENCE):
                    await session.initialize()

                async def ask(request, tool, arguments):
                    with anyio.fail_after(PATIENCE * 3):
                        result = await session.call_tool(tool, arguments)
                    return show(request, tool, arguments, result)

                await ask("What's on this gateway?", "list_registers", {})
                first = await ask("How warm is it in the hall?", "get_register",
                                  {"name": "hall.temperature"})
                print("Its `structuredContent`, for clients that read it:\n")
                print("```json")
                print(json.dumps(first.structured_content, ensure_ascii=False))
                print("```\n")
                await ask("Switch the kitchen light on.", "request_change",
                          {"name": "kitchen.lamp", "value": True})
                await ask("And open the garage door.", "request_change",
                          {"name": "garage.door", "value": "\"open\"", "timeout": "3s"})
                await ask("Is the front door locked?", "get_register", {"name": "front.door"})
                listed = await session.call_tool("wait_for_change", {"names": ["hall.temperature"], "wait": "0s"})
                index = listed.structured_content["index"]
                results = {}

                async def wait():
                    results["answer"] = await session.call_tool(
                        "wait_for_change",
                        {"names": ["hall.temperature"], "wait": "30s", "index": index})

                async with anyio.create_task_group() as group:
                    group.start_soon(wait)
                    # The sensor sends a new reading while the assistant waits.
                    devices[0].stdin.write(b"22.5\n")
                    devices[0].stdin.flush()
                show("Tell me when the hall temperature changes.", "wait_for_change",
                     {"names": ["hall.temperature"], "wait": "30s", "index": index},
                     results["answer"])
                await ask("Leave a note on the gateway that I'm back at three, for ten minutes.",
                          "set_register",
                          {"name": "desk.note", "value": "\"back at 3\"", "ttl": "10m"})
    finally:
        for device in devices:
            device.stdin.close()
            device.wait(PATIENCE)
        regd.kill()
        regd.wait()


if __name__ == "__main__":
    anyio.run(main)
