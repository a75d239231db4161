#!/usr/bin/env bash
# Checks docs/openapi.yaml against the real daemon with schemathesis: no 5xx, no
# response that contradicts the description, documented input accepted.
# Bounded: a fixed number of examples per operation, and polls cut short by --max-wait.
#
# Checks left out, and why:
# - negative_data_rejection: the protocol is lenient on purpose (unknown parameters
#   and members are ignored; regd accepts every Go duration, the schema's pattern
#   describes only the common forms).
# - allow_header_conformance: docs/protocol.md A1 binds `Allow: GET, PUT` for /provider
#   byte for byte, although DELETE /provider (B2) exists too.
set -euo pipefail
cd "$(dirname "$0")/../.."
examples=${SCHEMATHESIS_EXAMPLES:-50}

venv=$(realpath -m "${SCHEMATHESIS_VENV:-target/schemathesis-venv}")
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

cargo build --quiet --bin regd
work=$(mktemp -d)
target/debug/regd --addr 127.0.0.1:0 --max-wait 100ms >"$work/out" 2>"$work/err" &
regd=$!
trap 'kill $regd 2>/dev/null || true; rm -rf "$work"' EXIT
deadline=$((SECONDS + 30))
until grep -q '^listening on ' "$work/out"; do
    [ $SECONDS -lt $deadline ] || { cat "$work/err"; exit 1; }
    sleep 0.05
done
address=$(sed -n 's/^listening on //p' "$work/out")

# From the scratch folder: schemathesis and hypothesis keep their caches (.schemathesis/,
# .hypothesis/) in the working directory, which must not be the project's.
description=$PWD/docs/openapi.yaml
(cd "$work" && "$venv/bin/schemathesis" run "$description" --url "$address" \
    --max-examples "$examples" --seed 1 --generation-deterministic \
    --checks all --exclude-checks negative_data_rejection,allow_header_conformance)

kill -0 $regd || { echo "regd died during the run"; cat "$work/err"; exit 1; }
echo "schemathesis: regd matches docs/openapi.yaml"
