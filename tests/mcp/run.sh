#!/usr/bin/env bash
# `regctl mcp` against the official MCP Python SDK (`mcp` on PyPI): builds regd and
# regctl, installs the SDK from PyPI into a virtual environment of its own (pinned in
# requirements.txt), and runs sdk_client.py, which starts a real regd on a free
# loopback port and drives `regctl mcp` with the SDK's stdio client. Fails loudly: a
# missing python3, a failed install or a failed check all exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v python3 >/dev/null 2>&1; then
    echo "tests/mcp/run.sh needs python3 (3.10 or later) for the MCP Python SDK" >&2
    exit 1
fi
venv="${REGD_MCP_VENV:-target/mcp-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement tests/mcp/requirements.txt
"$venv/bin/python" -c 'import importlib.metadata as m; print("mcp SDK", m.version("mcp"))'

cargo build --locked --quiet --bin regd --bin regctl
exec "$venv/bin/python" tests/mcp/sdk_client.py target/debug/regd target/debug/regctl
