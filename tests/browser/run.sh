#!/usr/bin/env bash
# End-to-end tests of the web dashboard in a real browser (Debian's Chromium driven by
# playwright-core): builds regd, starts it on a free loopback port, runs the node:test
# suite against it, and stops it. Needs `apt-get install chromium` and `npm ci` here.
# SCREENSHOTS=DIR also writes the dashboard screenshots (docs/ uses them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

(cd "$root" && cargo build --locked --quiet --bin regd)
export REGD_BIN="$root/target/debug/regd"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    echo "no Chromium at $CHROMIUM: apt-get install -y chromium (or set CHROMIUM)" >&2
    exit 1
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
    echo "playwright-core is missing: run npm ci in tests/browser" >&2
    exit 1
fi

work="$(mktemp -d)"
# regd announces `listening on http://ADDR` on stdout once bound: read that line
# (blocking, with a deadline) instead of sleeping.
exec 3< <(exec "$REGD_BIN" --addr 127.0.0.1:0 --log-level warn 2>"$work/regd.log")
pid=$!
stop() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    exec 3<&-
    rm -rf "$work"
}
trap stop EXIT
if ! read -r -t 30 line <&3 || [[ "$line" != "listening on http://"* ]]; then
    echo "regd did not start: ${line:-no announcement}" >&2
    cat "$work/regd.log" >&2
    exit 1
fi
export REGD_URL="http://${line#listening on http://}"
echo "regd at $REGD_URL (pid $pid)"

status=0
(cd "$here" && node --test --test-reporter=spec dashboard.test.mjs) || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- regd log ---" >&2
    cat "$work/regd.log" >&2
fi
exit "$status"
