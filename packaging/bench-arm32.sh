#!/usr/bin/env bash
# Compares the two 32-bit ARM builds of regd under the same emulator and CPU model:
# the static musl ARMv6 build (dist/, as shipped) against the glibc ARMv7 build
# (target/armv7-unknown-linux-gnueabihf, built here if missing). Each round starts one
# regd under `qemu-arm -cpu cortex-a7`, measures it with the host's `regctl bench`, and
# stops it; the builds alternate, so drift in the machine's load falls on both. Prints
# every round, then per phase the median requests per second of each build and their
# ratio (musl ARMv6 / glibc ARMv7).
#
#   packaging/bench-arm32.sh [ROUNDS [PHASE_DURATION]]     (defaults: 5 rounds, 3s)
#
# Loopback only; every wait is bounded. Needs packaging/build-deps.sh and build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
duration=${2:-3s}
source packaging/metadata.sh
armv6="dist/regd-$version-armv6-linux-musleabihf"
armv7=target/armv7-unknown-linux-gnueabihf/release/regd
[ -x "$armv6" ] || { echo "bench-arm32: $armv6 missing; run packaging/build.sh" >&2; exit 1; }
if [ ! -x "$armv7" ]; then
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
        cargo build --locked --release --target armv7-unknown-linux-gnueabihf --bin regd
fi
cargo build --locked --release --bin regctl
regctl=target/release/regctl

work=$(mktemp -d)
daemon=
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs one round against one build; appends its JSON report to $work/NAME.jsonl.
measure() {
    local name=$1; shift
    "$@" --addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    daemon=$!
    local deadline=$((SECONDS + 30))
    until grep -q '^listening on http://' "$work/out"; do
        kill -0 "$daemon" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "bench-arm32: $name did not start" >&2; exit 1; }
        sleep 0.05
    done
    "$regctl" --registry "$(sed -n 's|^listening on ||p' "$work/out")" bench \
        --duration "$duration" --json 2>/dev/null >>"$work/$name.jsonl"
    echo >>"$work/$name.jsonl"
    kill -TERM "$daemon"
    wait "$daemon" || { echo "bench-arm32: $name did not exit cleanly" >&2; exit 1; }
    daemon=
}

for round in $(seq "$rounds"); do
    echo "round $round/$rounds"
    measure armv7-glibc qemu-arm -cpu cortex-a7 -L /usr/arm-linux-gnueabihf "$armv7"
    measure armv6-musl qemu-arm -cpu cortex-a7 "$armv6"
done

python3 - "$work" <<'EOF'
import json, statistics, sys
work = sys.argv[1]
runs = {name: [json.loads(line) for line in open(f"{work}/{name}.jsonl") if line.strip()]
        for name in ("armv7-glibc", "armv6-musl")}
phases = [p["phase"] for p in runs["armv7-glibc"][0]["phases"]]
def rates(name, phase):
    return [p["per_second"] for run in runs[name] for p in run["phases"] if p["phase"] == phase]
print(f"{'phase':<16} {'glibc ARMv7 req/s (rounds)':<44} {'musl ARMv6 req/s (rounds)':<44} ratio")
for phase in phases:
    v7, v6 = rates("armv7-glibc", phase), rates("armv6-musl", phase)
    show = lambda xs: " ".join(f"{x:.0f}" for x in xs)
    m7, m6 = statistics.median(v7), statistics.median(v6)
    print(f"{phase:<16} {m7:>7.0f} ({show(v7)})".ljust(61) + f" {m6:>7.0f} ({show(v6)})".ljust(45) + f" {m6 / m7:.2f}")
EOF
