#!/usr/bin/env bash
# Tests the artefacts of packaging/build.sh, on this x86-64 machine:
# - each ARM build under qemu-user: regd --version and regctl --version; regd started
#   on loopback and driven by regctl (provide, get, set, list, watch) and by curl
#   (publish, read, a long poll woken, expiry), then a clean SIGTERM. The arm64 build
#   under qemu-aarch64; the armhf .deb's static binaries under `qemu-arm -cpu arm1176`
#   (Pi Zero and 1) and `-cpu cortex-a7` (Pi 2 and later, 32-bit);
# - ARMv6: every ARMv7-only instruction in those binaries (a disassembly for the ARM1176
#   against one for a Cortex-A15) lies in a named routine that never runs on an ARMv6;
#   an ARMv7 program dies with SIGILL under `-cpu arm1176`, and the scan finds its
#   ARMv7 instruction (the controls that make both checks mean something);
# - the amd64 .deb unpacked into a throwaway root: files, modes, conffile, maintainer
#   scripts, units (systemd-analyze verify), the installed binaries run; the armhf .deb
#   holds the same files, and its binaries are the scanned ones;
# - lintian on every .deb (no errors, no warnings);
# - at the end, pass or fail: no process it started is still running.
# Loopback only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "packaging/test.sh: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
source packaging/metadata.sh
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
    [ "$(run "$(dirname "$regd")/regd-mqtt" --version)" = "regd-mqtt $version" ] || fail "regd-mqtt --version"
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

# Prints "ROUTINE ADDRESS INSTRUCTION" for each instruction of the ELF file $1 that a
# Cortex-A15 decodes and an ARM1176 does not, or decodes otherwise: ARMv7 (MOVW, DMB,
# ...), Thumb-2, NEON, VFPv3/v4 (d16-d31). The file needs its symbols: they tell code
# from data (mapping symbols) and name each routine.
armv7_only_instructions() {
    llvm-objdump -d --no-show-raw-insn --triple=armv6kz-linux-gnueabihf --mcpu=arm1176jzf-s "$1" >"$work/armv6.s"
    llvm-objdump -d --no-show-raw-insn --triple=armv7a-linux-gnueabihf --mcpu=cortex-a15 "$1" >"$work/armv7.s"
    awk '
        function text(line) { sub(/^ *[0-9a-f]+:[ \t]*/, "", line); return line }
        FNR == 1 { routine = "" }
        /^[0-9a-f]+ <.*>:$/ {
            match($0, /<.*>/)
            name = substr($0, RSTART + 1, RLENGTH - 2)
            if (name !~ /^\$/) routine = name   # $a, $d, $t mark code and data, inside a routine
            next
        }
        !/^ *[0-9a-f]+:/ { next }
        NR == FNR { armv6[$1] = text($0); next }
        armv6[$1] != text($0) { print routine, $1, text($0) }
    ' "$work/armv6.s" "$work/armv7.s"
}

# The routines that hold ARMv7-only instructions and never run on an ARMv6, and why.
armv6_unreachable=(
    # musl: its atomics pick these at start-up only when the kernel's AT_PLATFORM is not
    # "v6..." (src/thread/arm/__set_thread_area.c); an ARM1176 gets __a_*_v6.
    __a_barrier_v7
    __a_cas_v7
    # libunwind: save and restore d16-d31, only for unwind information that names those
    # registers; code built for the ARM1176's VFPv2 (d0-d15) has none.
    _ZN9libunwind13Registers_arm9saveVFPv3EPv
    _ZN9libunwind13Registers_arm12restoreVFPv3EPv
)

step "controls: an ARMv7 program under qemu-arm -cpu arm1176, and the scan of it"
# The emulator check means something only if the ARM1176 model refuses ARMv7 code, and
# the scan only if it finds ARMv7 code where there is some.
arm-linux-gnueabihf-gcc -marm -march=armv7-a+fp -O2 -static -nostdlib -ffreestanding -fno-stack-protector \
    -o "$work/armv7-probe" packaging/armv7-probe.c
[ "$(qemu-arm -cpu cortex-a7 "$work/armv7-probe")" = $'ARMv6 code ran\nARMv7 code ran' ] ||
    fail "the ARMv7 probe does not run on a Cortex-A7"
if probe=$(ulimit -c 0; qemu-arm -cpu arm1176 "$work/armv7-probe" 2>"$work/probe.err"); then probe_status=0; else probe_status=$?; fi
[ "$probe_status" = $((128 + 4)) ] && [ "$probe" = "ARMv6 code ran" ] ||
    fail "the ARMv7 probe did not die of SIGILL at its MOVW under -cpu arm1176 (status $probe_status, output: $probe)"
echo "ARMv7 probe: runs on cortex-a7; on arm1176 it dies of SIGILL (status $probe_status) at its MOVW"
armv7_only_instructions "$work/armv7-probe" | grep -q '^_start .*movw' ||
    fail "the instruction scan does not find the MOVW of the ARMv7 probe"
echo "instruction scan of the probe: $(armv7_only_instructions "$work/armv7-probe" | tr '\n' ';')"

step "armhf .deb: static ARMv6 binaries for every 32-bit ARM board"
armhf_deb="dist/regd_${version}-1_armhf.deb"
[ -f "$armhf_deb" ] || fail "$armhf_deb missing; run packaging/build.sh"
[ "$(dpkg-deb -f "$armhf_deb" Architecture)" = armhf ] || fail "$armhf_deb is not armhf"
diff <(dpkg-deb -c "$armhf_deb" | awk '{print $6}' | sort) \
    <(dpkg-deb -c "dist/regd_${version}-1_amd64.deb" | awk '{print $6}' | sort) ||
    fail "the armhf package does not hold the same files as the amd64 one"
armhf_root="$work/armhf"
dpkg-deb -x "$armhf_deb" "$armhf_root"
for binary in regd regctl; do
    [ -f "dist/$binary-$version-armv6-linux-musleabihf" ] || fail "dist/$binary-$version-armv6-linux-musleabihf missing"
done
for binary in $binaries; do
    shipped="dist/$binary-$version-armv6-linux-musleabihf" scanned="target/arm-unknown-linux-musleabihf/release/$binary"
    [ -f "$shipped" ] || continue
    file "$shipped" | grep -q 'ELF 32-bit LSB executable, ARM, EABI5.*statically linked' ||
        fail "$shipped is not a static 32-bit ARM executable: $(file "$shipped")"
    if [ -e "$armhf_root/usr/bin/$binary" ]; then
        cmp -s "$shipped" "$armhf_root/usr/bin/$binary" || fail "$shipped differs from /usr/bin/$binary in $armhf_deb"
    fi
    [ "$(qemu-arm -cpu arm1176 "$shipped" --version)" = "$binary $version" ] || fail "$shipped --version under arm1176"
    # The scan reads the unstripped build (its symbols tell code from data); the shipped
    # code is the same bytes.
    file "$scanned" | grep -q 'not stripped' || fail "$scanned is stripped; the scan needs its symbols"
    llvm-objcopy --dump-section=.text="$work/shipped.text" "$shipped" "$work/shipped.copy"
    llvm-objcopy --dump-section=.text="$work/scanned.text" "$scanned" "$work/scanned.copy"
    cmp -s "$work/shipped.text" "$work/scanned.text" || fail "the code of $shipped is not that of $scanned"
    armv7_only_instructions "$scanned" >"$work/armv7-only"
    outside=$(awk -v allowed="${armv6_unreachable[*]}" '
        BEGIN { split(allowed, names, " "); for (i in names) unreachable[names[i]] = 1 }
        !($1 in unreachable)' "$work/armv7-only")
    [ -z "$outside" ] || fail "ARMv7-only instructions in $binary outside the known routines:"$'\n'"$outside"
    [ "$(grep -c '^ *[0-9a-f]*:' "$work/armv7.s")" -gt 10000 ] || fail "the scan of $binary read almost no code"
    echo "$binary: $(grep -c '^ *[0-9a-f]*:' "$work/armv7.s") instructions scanned;" \
        "ARMv7-only: $(wc -l <"$work/armv7-only"), in $(cut -d' ' -f1 "$work/armv7-only" | sort -u | tr '\n' ' ')(never run on ARMv6)"
done
# On the ARM1176 (Pi Zero, 1), and on a Cortex-A7 (Pi 2 and later, 32-bit), where musl
# takes its ARMv7 routines.
check_target armhf-on-arm1176 "$armhf_root/usr/bin/regd" "$armhf_root/usr/bin/regctl" qemu-arm -cpu arm1176
check_target armhf-on-cortex-a7 "$armhf_root/usr/bin/regd" "$armhf_root/usr/bin/regctl" qemu-arm -cpu cortex-a7

step "static aarch64 musl binary"
musl="dist/regd-$version-aarch64-linux-musl"
[ -x "$musl" ] || fail "$musl missing"
file "$musl" | grep -q 'statically linked' || fail "$musl is not static: $(file "$musl")"
[ "$(qemu-aarch64 "$musl" --version)" = "regd $version" ] || fail "musl regd --version"
[ "$(qemu-aarch64 "dist/regctl-$version-aarch64-linux-musl" --version)" = "regctl $version" ] ||
    fail "musl regctl --version"
[ "$(qemu-aarch64 "dist/regd-mqtt-$version-aarch64-linux-musl" --version)" = "regd-mqtt $version" ] ||
    fail "musl regd-mqtt --version"

step "the amd64 .deb in a throwaway root"
deb=$(ls dist/regd_"$version"-1_amd64.deb)
root="$work/root"
mkdir -p "$root"
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
for file in usr/bin/regd usr/bin/regctl usr/share/man/man1/regctl.1.gz etc/default/regd usr/lib/systemd/system/regd.service \
    usr/lib/systemd/system/regd.socket usr/share/man/man8/regd.8.gz \
    usr/bin/regd-mqtt etc/default/regd-mqtt usr/lib/systemd/system/regd-mqtt.service usr/share/man/man8/regd-mqtt.8.gz \
    usr/share/doc/regd/copyright usr/share/doc/regd/changelog.Debian.gz; do
    [ -e "$root/$file" ] || fail "$file missing from $deb"
done
[ "$(stat -c %a "$root/usr/bin/regd")" = 755 ] || fail "regd mode"
[ "$(stat -c %a "$root/etc/default/regd")" = 644 ] || fail "/etc/default/regd mode"
grep -qx /etc/default/regd "$root/DEBIAN/conffiles" || fail "/etc/default/regd is not a conffile"
grep -qx /etc/default/regd-mqtt "$root/DEBIAN/conffiles" || fail "/etc/default/regd-mqtt is not a conffile"
# The bridge's service and the socket ship disabled: what the maintainer scripts do to
# each unit is checked by packaging/test-maintainer-scripts.sh.
[ "$("$root/usr/bin/regd-mqtt" --version)" = "regd-mqtt $version" ] || fail "installed regd-mqtt does not run"
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
sed "s|/usr/bin/regd-mqtt|$root/usr/bin/regd-mqtt|" "$root/usr/lib/systemd/system/regd-mqtt.service" >"$work/units/regd-mqtt.service"
SYSTEMD_LOG_LEVEL=err systemd-analyze verify --man=no "$work/units/regd.service" "$work/units/regd.socket" \
    "$work/units/regd-mqtt.service" || fail "systemd-analyze verify"
for unit in regd regd-mqtt; do
    score=$(systemd-analyze security --offline=yes "$work/units/$unit.service" 2>/dev/null |
        sed -n "s/.*Overall exposure level for $unit.service: \\([0-9.]*\\).*/\\1/p")
    echo "systemd-analyze security $unit.service: $score"
    python3 -c "import sys; sys.exit(0 if float('$score') <= 2.0 else 1)" || fail "$unit exposure $score > 2.0"
done

step "lintian"
for deb in dist/*.deb; do
    echo "--- $deb"
    lintian --fail-on error,warning --suppress-tags-from-file packaging/lintian-suppressed-tags.txt "$deb"
    # cargo-deb wraps a description too long for one line, and apt then shows half of it.
    synopsis=$(dpkg-deb -f "$deb" Description | sed -n 1p)
    [ "$synopsis" = "$description" ] ||
        fail "$deb: its synopsis is \"$synopsis\", not Cargo.toml's description (cargo-deb wraps one that does not fit a line of 80 characters)"
done

echo
echo "packaging tests passed"
