#!/usr/bin/env bash
# Compares the two 32-bit ARM builds of regd under the same emulator and CPU model:
# the static musl ARMv6 build (dist/, as shipped) against the glibc ARMv7 build
# (target/armv7-unknown-linux-gnueabihf, built here). Each round starts one
# regd under `qemu-arm -cpu cortex-a7`, measures it with the host's `regctl bench`, and
# stops it; the builds alternate, so drift in the machine's load falls on both. Prints
# per phase the median requests per second of each build, their ratio (musl ARMv6 /
# glibc ARMv7) and the median of the per-round ratios, then the daemon's CPU time per
# request (emulated: a ratio of costs, not a Pi's figures).
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
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    cargo build --locked --release --target armv7-unknown-linux-gnueabihf --bins --features "$bin_features"
cargo build --locked --release --bin regctl
regctl=target/release/regctl

work=$(mktemp -d -t regd-bench-arm32.XXXXXX)
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
    if ! "$regctl" --registry "$(sed -n 's|^listening on ||p' "$work/out")" bench \
        --duration "$duration" --json >>"$work/$name.jsonl" 2>"$work/bench.err"; then
        echo "bench-arm32: regctl bench against $name failed:" >&2
        cat "$work/bench.err" "$work/err" >&2
        exit 1
    fi
    echo >>"$work/$name.jsonl"
    # The daemon's CPU time (user + system, clock ticks) over the whole round: a cost per
    # request that other load on the machine disturbs less than a rate does.
    awk '{ print $14 + $15 }' "/proc/$daemon/stat" >>"$work/$name.ticks"
    kill -TERM "$daemon"
    wait "$daemon" || { echo "bench-arm32: $name did not exit cleanly" >&2; exit 1; }
    daemon=
}

for round in $(seq "$rounds"); do
    echo "round $round/$rounds"
    measure armv7-glibc qemu-arm -cpu cortex-a7 -L /usr/arm-linux-gnueabihf "$armv7"
    measure armv6-musl qemu-arm -cpu cortex-a7 "$armv6"
done

python3 - "$work" "$(getconf CLK_TCK)" <<'EOF'
import json, statistics, sys
work, ticks_per_second = sys.argv[1], int(sys.argv[2])
names = ("armv7-glibc", "armv6-musl")
runs = {name: [json.loads(line) for line in open(f"{work}/{name}.jsonl") if line.strip()] for name in names}
ticks = {name: [int(line) for line in open(f"{work}/{name}.ticks")] for name in names}
def rates(name, phase):
    return [p["per_second"] for run in runs[name] for p in run["phases"] if p["phase"] == phase]
print("requests per second, median of the rounds; ratio = musl ARMv6 / glibc ARMv7")
print(f"{'phase':<16}{'glibc ARMv7':>12}{'musl ARMv6':>12}{'ratio':>7}{'paired':>8}   rounds (glibc ARMv7 | musl ARMv6)")
for phase in [p["phase"] for p in runs[names[0]][0]["phases"]]:
    v7, v6 = rates(names[0], phase), rates(names[1], phase)
    paired = statistics.median(b / a for a, b in zip(v7, v6))
    rounds = " ".join(f"{x:.0f}" for x in v7) + " | " + " ".join(f"{x:.0f}" for x in v6)
    print(f"{phase:<16}{statistics.median(v7):>12.0f}{statistics.median(v6):>12.0f}"
          f"{statistics.median(v6) / statistics.median(v7):>7.2f}{paired:>8.2f}   {rounds}")
def cpu_per_request(name):
    return [t / ticks_per_second * 1e6 / sum(p["requests"] for p in run["phases"])
            for run, t in zip(runs[name], ticks[name])]
v7, v6 = cpu_per_request(names[0]), cpu_per_request(names[1])
print(f"{'CPU µs/request':<16}{statistics.median(v7):>12.1f}{statistics.median(v6):>12.1f}"
      f"{statistics.median(v6) / statistics.median(v7):>7.2f}"
      f"{statistics.median(b / a for a, b in zip(v7, v6)):>8.2f}   (the daemon's user + system time, all phases)")
EOF
