#!/bin/bash
# The real-systemd checks, run INSIDE a booted Debian 12 system (systemd as PID 1) by
# the unit regd-e2e.service that packaging/e2e-systemd.sh puts there. /e2e is shared
# with the host: it holds this script, regd.deb (the package under test), upgrade.deb
# (the same with a higher version), and receives `results` (one line per check: "ok:",
# "FAIL:" or "info:", each with its wall time), `phase` and `guest.log` (a trace).
# Phase 1 runs the checks up to the upgrade and reboots; phase 2 checks the system
# after the reboot, measures memory, checks socket mode, removes and purges the
# package, writes "done" and powers off. Every wait is bounded; nothing talks beyond loopback.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
share=/e2e
results=$share/results
exec >>"$share/guest.log" 2>&1
set -x

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
note() { echo "$*" >>"$results"; sync "$results" 2>/dev/null || sync; }
info() { note "info: $*"; }
# begin NAME: starts a check; then exactly one of pass/fail ends it.
begin() { check=$1; check_started=$(now); }
pass() { note "ok: $check${1:+: $1} ($(since "$check_started") s)"; }
fail() {
    note "FAIL: $check: $1 ($(since "$check_started") s)"
    journalctl -b -u regd -u regd.socket --no-pager -n 40 -o short-monotonic >>"$share/journal-on-failure.txt" 2>&1
}

# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds; 1 at the deadline.
wait_for() {
    local limit=$1; shift
    local deadline
    deadline=$(awk -v t="$(now)" -v l="$limit" 'BEGIN { printf "%d", t + l }')
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
healthy() { [ "$(curl -fsS --max-time 5 "http://127.0.0.1:${1:-8080}/healthz" 2>/dev/null)" = '{"status":"ok"}' ]; }
unit() { systemctl show -p "$2" --value "$1"; }
main_pid() { unit regd MainPID; }
active() { [ "$(systemctl is-active "$1")" = active ]; }
restarted_since() { [ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ] && active regd && healthy; }
# journalctl's --after-cursor combined with -u and -p misses entries (systemd 252), so
# a check either reads one run of regd by its invocation id, or everything after a
# cursor (no matches) and picks lines itself.
journal_mark() { journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'; }
# journal_since CURSOR: every journal line after CURSOR that names regd.
journal_since() { journalctl --after-cursor="$1" -o short --no-pager | grep regd; }
# journal_of INVOCATION_ID ARGS...: the lines one run of regd wrote, message text only.
journal_of() { local invocation=$1; shift; journalctl _SYSTEMD_INVOCATION_ID="$invocation" -o cat --no-pager "$@"; }
held_polls() { curl -fsS --max-time 5 http://127.0.0.1:8080/metrics | sed -n 's/^regd_held_polls //p'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$(main_pid)/status"; }
put() { curl -fsS --max-time 10 -X PUT http://127.0.0.1:8080/provider -d "$1"; }
# Whether regd.socket and regd-mqtt.service are disabled and inactive, as they ship;
# sets $shipped_state to what they are.
shipped_disabled() {
    local unit verdict=0
    shipped_state=
    for unit in regd.socket regd-mqtt.service; do
        shipped_state="$shipped_state${shipped_state:+, }$unit $(systemctl is-enabled "$unit") $(systemctl is-active "$unit")"
        [ "$(systemctl is-enabled "$unit")" = disabled ] && ! active "$unit" || verdict=1
    done
    return $verdict
}

phase=$(cat "$share/phase" 2>/dev/null || echo 1)
begin "boot (phase $phase)"
if state=$(timeout 300 systemctl is-system-running --wait); then
    pass "$state"
else
    fail "system is $state: $(systemctl --failed --no-legend --plain | tr '\n' ';')"
fi

phase1() {
    begin "install: apt install ./regd.deb -> active and enabled"
    cp "$share/regd.deb" "$share/upgrade.deb" /root/
    if ! output=$(apt-get install -y /root/regd.deb 2>&1); then
        fail "apt failed: $(tail -3 <<<"$output" | tr '\n' ' ')"
        return 1
    fi
    echo "$output" >>"$share/apt-install.log"
    if grep -Eq 'Could not execute systemctl|refusing' <<<"$output"; then
        fail "apt printed: $(grep -E 'Could not execute systemctl|refusing' <<<"$output" | head -1)"
    elif ! active regd || [ "$(systemctl is-enabled regd)" != enabled ]; then
        fail "regd is $(systemctl is-active regd), $(systemctl is-enabled regd)"
    elif ! shipped_disabled; then
        fail "$shipped_state (they ship disabled)"
    else
        pass "regd $(dpkg-query -W -f='${Version}' regd) active, enabled; $shipped_state"
    fi

    begin "healthz"
    if healthy; then pass '{"status":"ok"} on :8080'; else fail "GET /healthz on :8080 failed"; fi

    begin "publish with curl, read with regctl"
    put '{"registers":{"e2e":{"value":{"celsius":21.5},"ttl":"1m"}}}'
    if [ "$(regctl get e2e 2>&1)" = '{"celsius":21.5}' ] && regctl list | grep -q '^e2e'; then
        pass
    else
        fail "regctl get e2e: $(regctl get e2e 2>&1)"
    fi

    begin "journald priorities: info and warning (journalctl -p)"
    # A warning on purpose: a descriptor limit far below the connections held makes
    # accept() fail ("too many open files"), a configuration problem regd logs at
    # warning, and survives.
    mkdir -p /run/systemd/system/regd.service.d
    printf '[Service]\nLimitNOFILE=40\n' >/run/systemd/system/regd.service.d/e2e-nofile.conf
    systemctl daemon-reload && systemctl restart regd
    invocation=$(unit regd InvocationID)
    (
        fds=()
        for _ in $(seq 60); do exec {fd}<>/dev/tcp/127.0.0.1/8080 && fds+=("$fd"); done
        wait_for 30 sh -c "journalctl _SYSTEMD_INVOCATION_ID=$invocation -p 4..4 -o cat | grep -q 'accept failed'"
    )
    rm /run/systemd/system/regd.service.d/e2e-nofile.conf
    systemctl daemon-reload && systemctl restart regd
    info_line=$(journal_of "$invocation" -p 6..6 | grep -m1 'listening on')
    warning_line=$(journal_of "$invocation" -p 4..4 | grep -m1 'accept failed')
    if [ -z "$info_line" ]; then
        fail "no start line at priority info"
    elif [ -z "$warning_line" ]; then
        fail "no accept warning at priority warning"
    elif grep -Eq '^[0-9]{4}-' <<<"$info_line"; then
        fail "the journal line carries a timestamp of its own: $info_line"
    elif ! healthy; then
        fail "regd does not serve after the descriptor limit was lifted"
    else
        pass "info: \"${info_line:0:40}…\"; warning: \"${warning_line:0:50}…\""
    fi

    begin "no denials (seccomp, permissions) under a workload"
    # With SystemCallErrorNumber= reset, a system call outside the filter kills regd
    # with SIGSYS instead of failing with EPERM, so no denial can go unseen. The
    # watchdog probes every second meanwhile.
    mark=$(journal_mark)
    printf '[Service]\nSystemCallErrorNumber=\nWatchdogSec=2s\n' >/run/systemd/system/regd.service.d/e2e-strict.conf
    systemctl daemon-reload && systemctl restart regd
    invocation=$(unit regd InvocationID)
    workload
    sleep 3 # sleep-ok: lets the watchdog probe a few times under the strict filter
    systemctl stop regd
    result=$(unit regd Result) status=$(unit regd ExecMainStatus)
    denied=$(journal_since "$mark" | grep -Ei 'denied|not permitted|status=31|SIGSYS|health probe failed' | head -3)
    # Under a VM the kernel logs seccomp kills (audit type 1326); a container cannot read them.
    audit=$(journalctl -k --after-cursor="$mark" -o cat 2>/dev/null | grep -E 'type=1326|seccomp' | grep regd | head -3)
    restarts=$(journal_since "$mark" | grep -c 'Started regd.service' || true)
    rm /run/systemd/system/regd.service.d/e2e-strict.conf
    systemctl daemon-reload && systemctl start regd
    if [ "$workload_failures" -gt 0 ]; then
        fail "the workload failed: $workload_problem"
    elif [ -n "$denied$audit" ]; then
        fail "$denied $audit"
    elif [ "$result" != success ] || [ "$status" != 0 ] || [ "$restarts" != 1 ]; then
        fail "regd ended with $result/$status after $restarts starts (invocation $invocation)"
    else
        pass "healthz, metrics, dashboard, publish, read, long polls, change request, watch, expiry, watchdog, stop; exit 0"
    fi

    begin "watchdog restarts a SIGSTOPped regd"
    mark=$(journal_mark) pid=$(main_pid)
    kill -STOP "$pid"
    if wait_for 120 restarted_since "$pid" && journal_since "$mark" | grep -q 'regd.service: Watchdog timeout'; then
        pass "restarted after the watchdog timeout (WatchdogSec=30s)"
    else
        fail "not restarted within 120 s"
        kill -CONT "$pid" 2>/dev/null
    fi

    begin "kill -9: restarted"
    pid=$(main_pid)
    kill -KILL "$pid"
    if wait_for 30 restarted_since "$pid"; then pass; else fail "not restarted within 30 s"; fi

    begin "systemctl restart"
    invocation=$(unit regd InvocationID)
    if systemctl restart regd && [ "$(unit regd InvocationID)" != "$invocation" ] && healthy; then
        pass
    else
        fail "regd is $(systemctl is-active regd) after systemctl restart"
    fi

    begin "stop with 20 held long polls takes under 1 s"
    rm -f /run/e2e-poll.*
    for i in $(seq 20); do
        curl -fsS --max-time 60 "http://127.0.0.1:8080/consumer?name=e2e&wait=5m" >"/run/e2e-poll.$i" 2>&1 &
    done
    if ! wait_for 30 sh -c '[ "$(curl -fsS --max-time 5 http://127.0.0.1:8080/metrics | sed -n "s/^regd_held_polls //p")" = 20 ]'; then
        fail "the 20 polls were not held: $(held_polls)"
    else
        started=$(now)
        systemctl stop regd
        took=$(since "$started")
        wait
        answered=$(grep -l '"registers"' /run/e2e-poll.* | wc -l)
        if awk -v t="$took" 'BEGIN { exit !(t < 1.0) }' && [ "$answered" = 20 ]; then
            pass "systemctl stop took $took s; all 20 polls answered"
        else
            fail "systemctl stop took $took s; $answered of 20 polls answered"
        fi
    fi
    systemctl start regd

    begin "usage error in /etc/default/regd: not restarted, fatal line at err"
    cp /etc/default/regd /root/default.orig
    echo 'REGD_OPTS=--no-such-flag' >>/etc/default/regd
    mark=$(journal_mark)
    systemctl restart regd 2>/dev/null
    wait_for 20 systemctl is-failed --quiet regd
    # Watch for longer than RestartSec=1s (twice over) to prove no restart follows.
    sleep 3 # sleep-ok: a restart loop would show within this window
    restarts=$(journal_since "$mark" | grep -c 'regd.service: Scheduled restart job' || true)
    status=$(unit regd ExecMainStatus) state=$(systemctl is-active regd)
    fatal=$(journal_of "$(unit regd InvocationID)" -p 3..3 | grep -m1 'unexpected argument')
    cp /root/default.orig /etc/default/regd
    systemctl reset-failed regd && systemctl start regd
    problems=
    if [ "$state" != failed ] || [ "$restarts" != 0 ] || [ "$status" != 2 ]; then
        problems="regd is $state after $restarts restarts, exit status $status; "
    fi
    if [ -z "$fatal" ]; then
        problems="${problems}no 'unexpected argument' line at priority err: $(journal_since "$mark" | grep -m1 unexpected); "
    fi
    if ! healthy; then
        problems="${problems}regd does not serve again after the setting was fixed"
    fi
    if [ -n "$problems" ]; then
        fail "$problems"
    else
        pass "exit 2, failed without a restart; err: \"$fatal\""
    fi

    begin "live systemd-analyze security"
    scores= worst=0
    for unit in regd regd-mqtt; do
        score=$(systemd-analyze security "$unit.service" 2>/dev/null |
            sed -n "s/.*Overall exposure level for $unit.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p")
        scores="$scores${scores:+; }$unit ${score:-unknown}"
        awk -v s="${score%% *}" 'BEGIN { exit !(s != "" && s <= 2.0) }' || worst=1
    done
    if [ "$worst" = 0 ]; then pass "$scores"; else fail "exposure level $scores (at most 2.0 expected)"; fi

    begin "upgrade to a newer version of the package"
    # A register with a long ttl must survive the upgrade (and the reboot after it):
    # regd saves its registers in its StateDirectory at every clean stop.
    put '{"registers":{"e2e-upgrade":{"value":"before the upgrade","ttl":"1h"}}}'
    invocation=$(unit regd InvocationID)
    old_version=$(dpkg-query -W -f='${Version}' regd)
    if ! output=$(apt-get install -y /root/upgrade.deb 2>&1); then
        fail "apt failed: $(tail -3 <<<"$output" | tr '\n' ' ')"
    else
        echo "$output" >>"$share/apt-upgrade.log"
        new_version=$(dpkg-query -W -f='${Version}' regd)
        if grep -Eq 'Could not execute systemctl|refusing|Configuration file' <<<"$output"; then
            fail "apt printed: $(grep -Em1 'Could not execute systemctl|refusing|Configuration file' <<<"$output")"
        elif [ "$new_version" = "$old_version" ]; then
            fail "still version $old_version"
        elif [ "$(unit regd InvocationID)" = "$invocation" ]; then
            fail "regd was not restarted by the upgrade"
        elif ! active regd || [ "$(systemctl is-enabled regd)" != enabled ] || ! healthy; then
            fail "regd is $(systemctl is-active regd), $(systemctl is-enabled regd) after the upgrade"
        elif ! shipped_disabled; then
            fail "the upgrade changed what ships disabled: $shipped_state"
        elif [ "$(regctl get e2e-upgrade 2>&1)" != '"before the upgrade"' ]; then
            fail "a register with ttl 1h did not survive the upgrade: $(regctl get e2e-upgrade 2>&1)"
        else
            pass "$old_version -> $new_version: restarted, enabled, serving, the registers kept; $shipped_state"
        fi
    fi

    begin "reboot"
    now >"$share/reboot-started"
    echo 2 >"$share/phase"
    sync
    systemctl reboot
    exit 0
}

# Every feature the daemon has, against the strict filter; failures counted.
workload() {
    workload_failures=0 workload_problem=
    problem() { workload_failures=$((workload_failures + 1)); workload_problem="$workload_problem$1; "; }
    healthy || problem "healthz"
    curl -fsS --max-time 5 http://127.0.0.1:8080/metrics | grep -q '^regd_' || problem "metrics"
    curl -fsS --max-time 5 http://127.0.0.1:8080/ | grep -qi '<html' || problem "dashboard"
    put '{"registers":{"t":{"value":1,"ttl":"1m"},"brief":{"value":2,"ttl":"300ms"}}}' || problem "publish"
    curl -fsS --max-time 5 "http://127.0.0.1:8080/consumer?name=t&details=1" | grep -q '"ttl"' || problem "read with details"
    curl -fsS --max-time 20 "http://127.0.0.1:8080/consumer?name=t&wait=15s" >/run/e2e-woken &
    local poll=$!
    wait_for 10 sh -c '[ "$(curl -fsS --max-time 5 http://127.0.0.1:8080/metrics | sed -n "s/^regd_held_polls //p")" = 1 ]' ||
        problem "poll not held"
    put '{"registers":{"t":{"value":3,"ttl":"1m"}}}'
    wait "$poll" && grep -q '"value":3' /run/e2e-woken || problem "long poll not woken"
    curl -fsS --max-time 10 "http://127.0.0.1:8080/consumer?name=nobody&wait=1s" >/dev/null || problem "long poll timeout"
    rm -f /run/e2e-provide && mkfifo /run/e2e-provide
    regctl provide lamp false --ttl 5s </run/e2e-provide >/run/e2e-provide.out 2>&1 &
    local provider=$!
    exec 7>/run/e2e-provide
    wait_for 10 sh -c '[ "$(regctl get lamp 2>/dev/null)" = false ]' || problem "regctl provide"
    timeout 10 regctl watch lamp >/run/e2e-watch 2>&1 7>&- &
    local watcher=$!
    regctl set lamp true --timeout 10s || problem "change request (regctl set)"
    wait_for 10 grep -q true /run/e2e-watch || problem "regctl watch"
    kill "$watcher" 2>/dev/null
    exec 7>&-
    wait "$provider" || problem "regctl provide exited non-zero"
    wait_for 10 sh -c '! curl -fsS --max-time 5 "http://127.0.0.1:8080/consumer?name=brief" | grep -q brief' ||
        problem "expiry"
    wait "$watcher" 2>/dev/null
}

# Socket mode as README describes it (regd.service disabled, regd.socket on port 80):
# systemctl restart must keep serving on the socket systemd holds (issue 11, F2). Run
# after the reboot, so that the reboot check sees what the package alone left enabled.
socket_mode() {
    begin "socket mode (regd.socket, port 80): systemctl restart keeps serving"
    mark=$(journal_mark)
    systemctl disable --now regd 2>/dev/null && systemctl enable --now regd.socket 2>/dev/null
    socket_ok=0
    # The first connection starts regd; then two restarts, each must keep serving on
    # the socket that systemd holds (issue 11, F2).
    if healthy 80 && active regd && systemctl restart regd && healthy 80 &&
        systemctl restart regd && healthy 80 && active regd.socket; then
        socket_ok=1
    fi
    socket_log=$(journal_since "$mark" | grep -Ei 'POLLHUP|accept failed|refusing|Failed' | head -2)
    used_socket=$(journal_since "$mark" | grep -c 'using the listening socket passed by systemd' || true)
    systemctl disable --now regd.socket 2>/dev/null
    systemctl stop regd
    systemctl enable --now regd 2>/dev/null
    if [ "$socket_ok" != 1 ]; then
        fail "not serving on :80 after a restart (regd $(systemctl is-active regd), regd.socket $(systemctl is-active regd.socket)): $socket_log"
    elif [ -n "$socket_log" ] || [ "$used_socket" -lt 3 ]; then
        fail "${socket_log:-regd used the socket $used_socket times, not 3}"
    elif ! healthy || [ "$(systemctl is-enabled regd.socket)" != disabled ]; then
        fail "back in service mode: :8080 $(healthy && echo serves || echo "does not serve"), regd.socket $(systemctl is-enabled regd.socket)"
    else
        pass "3 runs of regd on one socket; regd.socket active throughout; back to :8080"
    fi

}

phase2() {
    begin "reboot: port 8080 serves, registers kept, regd.socket not enabled"
    if ! wait_for 60 healthy; then
        fail "GET /healthz on :8080 failed after the reboot (regd $(systemctl is-active regd))"
    elif healthy 80 || curl -s --max-time 3 -o /dev/null http://127.0.0.1:80/; then
        fail "something answers on port 80 after the reboot"
    elif ! shipped_disabled; then
        fail "$shipped_state"
    elif journalctl -b -u regd -o cat | grep -q 'using the listening socket passed by systemd'; then
        fail "regd was started by regd.socket"
    elif [ "$(regctl get e2e-upgrade 2>&1)" != '"before the upgrade"' ]; then
        fail "the register saved before the reboot is gone: $(regctl get e2e-upgrade 2>&1)"
    else
        check_started=$(cat "$share/reboot-started")
        pass "regd on :8080 with its registers, nothing on :80; $shipped_state (time from systemctl reboot to here)"
    fi

    begin "resident memory: idle, and with 1,000 registers"
    idle=$(rss_kib)
    for batch in 0 1 2 3; do
        body=$(for i in $(seq $((batch * 250)) $((batch * 250 + 249))); do
            printf '"sensor-%04d":{"value":{"celsius":21.5,"id":%d},"ttl":"1h"},' "$i" "$i"
        done)
        put "{\"registers\":{${body%,}}}" || break
    done
    count=$(regctl list | grep -c '^sensor-')
    loaded=$(rss_kib)
    if [ "$count" = 1000 ] && [ -n "$idle" ] && [ -n "$loaded" ]; then
        pass "idle $idle KiB, with 1,000 registers $loaded KiB"
        info "resident memory: idle $idle KiB; with 1,000 registers $loaded KiB ($(uname -m))"
    else
        fail "$count registers stored; RSS idle ${idle:-?} KiB, loaded ${loaded:-?} KiB"
    fi

    socket_mode

    begin "remove keeps /etc/default/regd and the registers, purge removes them; nothing failed"
    if ! apt-get remove -y regd >>"$share/apt-remove.log" 2>&1; then
        fail "apt-get remove failed"
        return 1
    fi
    removed_state="$(systemctl is-active regd) $([ -e /usr/bin/regd ] && echo "binary left")"
    [ -e /etc/default/regd ] && [ -e /var/lib/private/regd/state.json ] && kept=1 || kept=0
    apt-get purge -y regd >>"$share/apt-remove.log" 2>&1
    # (regd-e2e.service, which runs this script, is no part of the package.)
    leftovers=$(ls -d /etc/default/regd /etc/default/regd-mqtt /etc/systemd/system/*.wants/regd.* \
        /etc/systemd/system/*.wants/regd-mqtt.* /var/lib/systemd/deb-systemd-helper-enabled/regd.* \
        /var/lib/systemd/deb-systemd-helper-enabled/regd-mqtt.* /var/lib/regd /var/lib/private/regd 2>/dev/null | tr '\n' ' ')
    failed=$(systemctl --failed --no-legend --plain | tr '\n' ';')
    running=$(systemctl is-system-running)
    if [ "$removed_state" != "inactive " ] || [ "$kept" != 1 ]; then
        fail "after remove: regd $removed_state, /etc/default/regd and the saved registers kept: $kept"
    elif [ -n "$leftovers" ]; then
        fail "purge left $leftovers"
    elif [ -n "$failed" ] || [ "$running" != running ]; then
        fail "system $running; failed units: $failed"
    else
        pass "systemctl --failed is empty, the system is running"
    fi
}

if [ "$phase" = 1 ]; then
    phase1
else
    phase2
fi
note "done"
sync
systemctl poweroff
