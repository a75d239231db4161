#!/usr/bin/env bash
# Tests the artefacts of packaging/build.sh, on this x86-64 machine:
# - for each ARM target: regd --version and regctl --version under qemu-user; the ARM
#   regd started under qemu on loopback and driven by the ARM regctl (provide, get,
#   set, list, watch) and by curl; expiry and a long poll;
# - the amd64 .deb installed into a throwaway root: files, modes, conffile, units
#   (systemd-analyze verify), and the installed binaries run;
# - lintian on every .deb (no errors);
# - at the end, pass or fail: no process it started is still running.
# Loopback only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "packaging/test.sh: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
work=$(mktemp -d)
# Every process this script starts inherits this mark, so the last check finds any
# that outlived the script, however it was started. The script's own shells do not
# show it: /proc/PID/environ is the environment a process was started with.
export REGD_PACKAGING_TEST_RUN="$$.$RANDOM"
pids=()
# True while process $1 runs (a zombie, dead but not yet reaped, does not count).
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${state:0:1}" != Z ]
}
cleanup() {
    local status=$? pid survivors deadline=$((SECONDS + 10))
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        while running "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    # grep alone runs without the mark (no pipeline: its other commands would have it).
    survivors=$(env -u REGD_PACKAGING_TEST_RUN grep -lxzF "REGD_PACKAGING_TEST_RUN=$REGD_PACKAGING_TEST_RUN" \
        /proc/[0-9]*/environ 2>/dev/null || true)
    survivors=${survivors//\/proc\//}
    survivors=${survivors//\/environ/}
    if [ -n "$survivors" ]; then
        echo "packaging/test.sh: processes it started are still running (now killed):" >&2
        ps -o pid,args -p "${survivors//$'\n'/,}" >&2 || true
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $survivors 2>/dev/null || true
        status=1
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a regd command line in the background; sets $address.
start_regd() {
    local log=$1; shift
    "$@" --addr 127.0.0.1:0 >"$log.out" 2>"$log.err" &
    pids+=($!)
    local deadline=$((SECONDS + 60))
    until grep -q '^listening on http://' "$log.out" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { cat "$log.err" >&2; fail "regd did not start: $*"; }
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log.err" >&2; fail "regd exited: $*"; }
        sleep 0.05
    done
    address=$(sed -n 's|^listening on ||p' "$log.out")
}

# Polls a shell condition for up to $1 seconds.
wait_for() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until eval "$@"; do
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for: $*"
        sleep 0.05
    done
}

# The functional check of one ARM build: check_target NAME REGD REGCTL QEMU-COMMAND...
check_target() {
    local name=$1 regd=$2 regctl=$3
    shift 3
    local qemu=("$@")
    step "$name: $(basename "$regd") and $(basename "$regctl") under ${qemu[*]}"
    [ -x "$regd" ] || fail "$regd missing; run packaging/build.sh"
    file "$regd" | grep -q 'ARM\|aarch64' || fail "$regd is not an ARM binary"
    # Commands started in the background run qemu directly, never through this
    # function, so that $! is qemu itself and killing it ends the ARM process.
    run() { "${qemu[@]}" "$@"; }
    [ "$(run "$regd" --version)" = "regd $version" ] || fail "regd --version"
    start_regd "$work/$name" "${qemu[@]}" "$regd"
    local daemon=${pids[-1]}
    echo "ARM regd at $address"

    # curl: publish, read, long poll woken by a change, expiry.
    curl -fsS -X PUT "$address/provider" -d '{"registers":{"t":{"value":21.5,"ttl":"1s"}}}'
    [ "$(curl -fsS "$address/consumer?name=t")" = '{"registers":{"t":{"value":21.5}}}' ] || fail "read"
    curl -fsS "$address/consumer?name=t&wait=20s" >"$work/poll" &
    local poll=$!
    pids+=("$poll")
    wait_for 20 '[ "$(curl -fsS "$address/metrics" | sed -n "s/^regd_held_polls //p")" = 1 ]'
    curl -fsS -X PUT "$address/provider" -d '{"registers":{"t":{"value":22,"ttl":"300ms"}}}'
    wait "$poll"
    [ "$(cat "$work/poll")" = '{"registers":{"t":{"value":22}}}' ] || fail "long poll: $(cat "$work/poll")"
    wait_for 10 '[ "$(curl -fsS "$address/consumer?name=t")" = "{\"registers\":{}}" ]'
    grep -q 'register "t" expired' "$work/$name.err" || fail "expiry not logged"

    [ -x "$regctl" ] || fail "$regctl missing; run packaging/build.sh"
    {
        [ "$(run "$regctl" --version)" = "regctl $version" ] || fail "regctl --version"
        export REGISTRY=$address
        # provide keeps a register alive and applies change requests until stdin ends.
        rm -f "$work/provide-in" && mkfifo "$work/provide-in"
        "${qemu[@]}" "$regctl" provide lamp false --ttl 2s <"$work/provide-in" >"$work/provide-out" 2>&1 &
        local provider=$!
        pids+=("$provider")
        exec 9>"$work/provide-in"
        wait_for 30 '[ "$(run "$regctl" get lamp 2>/dev/null)" = false ]'
        "${qemu[@]}" "$regctl" watch lamp >"$work/watch" 2>&1 9>&- &
        local watcher=$!
        pids+=("$watcher")
        run "$regctl" set lamp true --timeout 20s
        [ "$(run "$regctl" get lamp)" = true ] || fail "regctl set"
        run "$regctl" list | grep -q '^lamp' || fail "regctl list"
        wait_for 20 'grep -q true "$work/watch"'
        exec 9>&-
        wait "$provider" || fail "regctl provide exited non-zero: $(cat "$work/provide-out")"
        wait_for 10 '! run "$regctl" list | grep -q "^lamp"'
        kill "$watcher"
        wait "$watcher" 2>/dev/null || true
        unset REGISTRY
    }
    kill -TERM "$daemon"
    wait "$daemon" || fail "regd under qemu did not exit 0 on SIGTERM"
    echo "ok: $name"
}

check_target arm64 target/aarch64-unknown-linux-gnu/release/regd target/aarch64-unknown-linux-gnu/release/regctl \
    qemu-aarch64 -L /usr/aarch64-linux-gnu

check_target armv7 target/armv7-unknown-linux-gnueabihf/release/regd target/armv7-unknown-linux-gnueabihf/release/regctl \
    qemu-arm -L /usr/arm-linux-gnueabihf

step "static aarch64 musl binary"
musl="dist/regd-$version-aarch64-linux-musl"
[ -x "$musl" ] || fail "$musl missing"
file "$musl" | grep -q 'statically linked' || fail "$musl is not static: $(file "$musl")"
[ "$(qemu-aarch64 "$musl" --version)" = "regd $version" ] || fail "musl regd --version"
[ "$(qemu-aarch64 "dist/regctl-$version-aarch64-linux-musl" --version)" = "regctl $version" ] ||
    fail "musl regctl --version"

step "the amd64 .deb in a throwaway root"
deb=$(ls dist/regd_"$version"-1_amd64.deb)
root="$work/root"
mkdir -p "$root"
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
for file in usr/bin/regd usr/bin/regctl usr/share/man/man1/regctl.1.gz etc/default/regd usr/lib/systemd/system/regd.service \
    usr/lib/systemd/system/regd.socket usr/share/man/man8/regd.8.gz \
    usr/share/doc/regd/copyright usr/share/doc/regd/changelog.Debian.gz; do
    [ -e "$root/$file" ] || fail "$file missing from $deb"
done
[ "$(stat -c %a "$root/usr/bin/regd")" = 755 ] || fail "regd mode"
[ "$(stat -c %a "$root/etc/default/regd")" = 644 ] || fail "/etc/default/regd mode"
grep -qx /etc/default/regd "$root/DEBIAN/conffiles" || fail "/etc/default/regd is not a conffile"
for script in postinst prerm postrm; do
    grep -q 'deb-systemd-helper\|deb-systemd-invoke\|systemctl' "$root/DEBIAN/$script" ||
        fail "$script does not manage the service"
done
grep -q 'enable' "$root/DEBIAN/postinst" || fail "postinst does not enable regd"
dpkg-deb -f "$deb" Depends | grep -q 'libc6' || fail "Depends lacks libc6: $(dpkg-deb -f "$deb" Depends)"
[ "$("$root/usr/bin/regd" --version)" = "regd $version" ] || fail "installed regd does not run"
start_regd "$work/installed" "$root/usr/bin/regd"
[ "$(curl -fsS "$address/healthz")" = '{"status":"ok"}' ] || fail "installed regd does not serve"
"$root/usr/bin/regctl" --registry "$address" list >/dev/null || fail "installed regctl does not run"
kill -TERM "${pids[-1]}"; wait "${pids[-1]}"
# The units verify as installed, with ExecStart pointing into the throwaway root
# (man pages are checked by lintian).
mkdir -p "$work/units"
sed "s|/usr/bin/regd|$root/usr/bin/regd|" "$root/usr/lib/systemd/system/regd.service" >"$work/units/regd.service"
cp "$root/usr/lib/systemd/system/regd.socket" "$work/units/regd.socket"
SYSTEMD_LOG_LEVEL=err systemd-analyze verify --man=no "$work/units/regd.service" "$work/units/regd.socket" ||
    fail "systemd-analyze verify"
score=$(systemd-analyze security --offline=yes "$work/units/regd.service" 2>/dev/null |
    sed -n 's/.*Overall exposure level for regd.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security: $score"
python3 -c "import sys; sys.exit(0 if float('$score') <= 2.0 else 1)" || fail "exposure $score > 2.0"

step "lintian"
for deb in dist/*.deb; do
    echo "--- $deb"
    lintian --fail-on error --suppress-tags-from-file packaging/lintian-suppressed-tags.txt "$deb"
done

echo
echo "packaging tests passed"
