#!/usr/bin/env bash
# Checks what the maintainer scripts inside each built .deb do, without a VM: runs
# postinst, prerm and postrm for install, upgrade, removal and purge with
# deb-systemd-helper, deb-systemd-invoke and systemctl replaced by stubs that record
# their calls, and checks those calls:
# - regd.service is enabled and started on install, restarted on upgrade;
# - regd.socket is never enabled, started or restarted by a maintainer script (it
#   ships disabled; issue 11, F1), an administrator's `enable` of it is kept on
#   upgrade, and removal stops it;
# - regd-mqtt.service (shipped disabled) is never enabled or started, restarted on
#   upgrade only if it runs (try-restart), kept enabled if the administrator enabled
#   it, stopped on removal;
# - purge removes the state of all three units and regd's state directory; remove
#   keeps the directory.
# Also checks that the three units are in the package and that a usage error is not
# restarted (F4). packaging/e2e-systemd.sh proves the same under a real systemd.
#
#   packaging/test-maintainer-scripts.sh [DEB...]    (default: dist/regd_*.deb)
set -euo pipefail
# Packages named on the command line are found from the caller's directory.
debs=()
for deb in "$@"; do debs+=("$(realpath -m -- "$deb")"); done
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Stubs: each records "NAME ARGS" in $CALLS. deb-systemd-helper answers was-enabled
# and debian-installed from $WAS_ENABLED and $DEBIAN_INSTALLED (unit names).
stubs="$work/stubs"
mkdir -p "$stubs" "$work/run-systemd-system"
var_lib="$work/var/lib"
for tool in deb-systemd-helper deb-systemd-invoke systemctl; do
    cat >"$stubs/$tool" <<'EOF'
#!/bin/sh
echo "${0##*/} $*" >>"$CALLS"
[ "${0##*/}" = deb-systemd-helper ] || exit 0
[ "$1" = --quiet ] && shift
case "$1" in
was-enabled) list=$WAS_ENABLED ;;
debian-installed) list=$DEBIAN_INSTALLED ;;
*) exit 0 ;;
esac
for unit in $list; do [ "$unit" = "$2" ] && exit 0; done
exit 1
EOF
    chmod +x "$stubs/$tool"
done

# run DEB_CONTROL_DIR SCRIPT ARGS...: runs one maintainer script against the stubs
# (as if systemd were PID 1), with WAS_ENABLED and DEBIAN_INSTALLED from the caller;
# sets $calls to what it called.
run() {
    local control=$1 script=$2; shift 2
    local copy="$work/$script.sh"
    # The scripts test for a running systemd and for deb-systemd-helper by path, and
    # purge removes regd's state under /var/lib: all of them point into $work here.
    sed -e "s|/run/systemd/system|$work/run-systemd-system|g" \
        -e "s|/usr/bin/deb-systemd-helper|$stubs/deb-systemd-helper|g" \
        -e "s|/var/lib/|$var_lib/|g" "$control/$script" >"$copy"
    : >"$work/calls"
    CALLS="$work/calls" PATH="$stubs:$PATH" sh -e "$copy" "$@" ||
        bad "$script $* exited with status $?"
    calls=$(cat "$work/calls")
}

# expect WHAT PATTERN: $calls has a line matching the extended regex PATTERN.
expect() {
    if grep -Eq "$2" <<<"$calls"; then ok "$1"; else bad "$1 (calls: ${calls//$'\n'/; })"; fi
}
# refuse WHAT PATTERN: no line of $calls matches PATTERN.
refuse() {
    if grep -Eq "$2" <<<"$calls"; then bad "$1 (calls: ${calls//$'\n'/; })"; else ok "$1"; fi
}
# started UNIT / enabled UNIT: a call that starts (or restarts) / enables UNIT.
# try-restart, which acts only on a running unit, is not a start.
started() { echo "^(deb-systemd-invoke|systemctl) (.* )?(start|restart|reload-or-restart) (.* )?${1//./\\.}( |\$)"; }
enabled() { echo "^(deb-systemd-helper|systemctl) (.* )?enable (.* )?${1//./\\.}( |\$)"; }
# all_three PREFIX: the three units in any order, as one call's arguments after PREFIX.
all_three() {
    local units=(regd.service regd.socket regd-mqtt.service) first second third alternatives=()
    for first in "${units[@]}"; do for second in "${units[@]}"; do for third in "${units[@]}"; do
        [ "$first" != "$second" ] && [ "$second" != "$third" ] && [ "$first" != "$third" ] &&
            alternatives+=("$first $second $third")
    done; done; done
    local IFS='|'
    echo "^$1 (${alternatives[*]//./\\.})\$"
}

[ ${#debs[@]} -gt 0 ] || debs=(dist/regd_*.deb)
for deb in "${debs[@]}"; do
    [ -f "$deb" ] || { bad "$deb missing; run packaging/build.sh"; continue; }
    echo "--- $deb"
    control="$work/control"
    rm -rf "$control" "$work/root"
    dpkg-deb -e "$deb" "$control"
    dpkg-deb -x "$deb" "$work/root"
    for unit in regd.service regd.socket regd-mqtt.service; do
        if [ -f "$work/root/usr/lib/systemd/system/$unit" ]; then ok "$unit is installed"; else bad "$unit is not in the package"; fi
    done
    for unit in regd.service regd-mqtt.service; do
        if grep -qx 'RestartPreventExitStatus=2' "$work/root/usr/lib/systemd/system/$unit"; then
            ok "$unit: a usage error (exit 2) is not restarted"
        else
            bad "$unit lacks RestartPreventExitStatus=2"
        fi
    done

    # A new installation: deb-systemd-helper's was-enabled is true for units it has
    # never seen, so it is true for the socket too here; it must still not be enabled.
    WAS_ENABLED="regd.service regd.socket regd-mqtt.service" DEBIAN_INSTALLED="" run "$control" postinst configure
    expect "install: regd.service enabled" '^deb-systemd-helper enable regd\.service'
    expect "install: regd.service started" '^deb-systemd-invoke start regd\.service$'
    refuse "install: regd.socket not enabled" "$(enabled regd.socket)"
    refuse "install: regd.socket not started" "$(started regd.socket)"
    expect "install: regd.socket state recorded (for purge)" '^deb-systemd-helper update-state regd\.socket'
    refuse "install: regd-mqtt.service not enabled" "$(enabled regd-mqtt.service)"
    refuse "install: regd-mqtt.service not started" "$(started regd-mqtt.service)|try-restart regd-mqtt"
    expect "install: regd-mqtt.service state recorded (for purge)" '^deb-systemd-helper update-state regd-mqtt\.service'

    WAS_ENABLED="regd.service" DEBIAN_INSTALLED="regd.service regd.socket regd-mqtt.service" run "$control" postinst configure 0.1.0-1
    expect "upgrade: regd.service restarted" '^deb-systemd-invoke restart regd\.service$'
    refuse "upgrade: regd.socket not enabled" "$(enabled regd.socket)"
    refuse "upgrade: regd.socket not started or restarted" "$(started regd.socket)|try-restart regd\.socket"
    refuse "upgrade: regd-mqtt.service not enabled" "$(enabled regd-mqtt.service)"
    refuse "upgrade: regd-mqtt.service not started" "$(started regd-mqtt.service)"
    expect "upgrade: regd-mqtt.service restarted if it runs" '^deb-systemd-invoke try-restart regd-mqtt\.service$'

    # Socket mode, chosen by the administrator: regd.service disabled, regd.socket
    # enabled. The upgrade keeps that choice and leaves the socket running.
    WAS_ENABLED="regd.socket regd-mqtt.service" DEBIAN_INSTALLED="regd.service regd.socket regd-mqtt.service" run "$control" postinst configure 0.1.0-1
    refuse "upgrade in socket mode: regd.service not enabled" '^deb-systemd-helper enable regd\.service'
    expect "upgrade in socket mode: regd.socket stays enabled" '^deb-systemd-helper enable regd\.socket'
    refuse "upgrade in socket mode: regd.socket not restarted" "$(started regd.socket)|try-restart regd\.socket"
    expect "upgrade with the bridge enabled: regd-mqtt.service stays enabled" '^deb-systemd-helper enable regd-mqtt\.service'

    WAS_ENABLED="" DEBIAN_INSTALLED="" run "$control" prerm upgrade 0.1.1-1
    refuse "prerm upgrade: nothing stopped" 'stop'
    run "$control" prerm remove
    expect "remove: the three units stopped" "$(all_three 'deb-systemd-invoke stop')"
    mkdir -p "$var_lib/private/regd" && ln -sfn private/regd "$var_lib/regd" && touch "$var_lib/private/regd/state.json"
    run "$control" postrm remove
    expect "remove: systemd reloaded" '^systemctl --system daemon-reload'
    if [ -e "$var_lib/private/regd/state.json" ]; then ok "remove: the saved registers are kept"; else bad "remove deleted /var/lib/private/regd"; fi
    run "$control" postrm purge
    expect "purge: the state of the three units removed" "$(all_three 'deb-systemd-helper purge')"
    if [ -e "$var_lib/private/regd" ] || [ -L "$var_lib/regd" ]; then
        bad "purge left regd's state directory (/var/lib/private/regd, /var/lib/regd)"
    else
        ok "purge: regd's state directory removed"
    fi
done

if [ "$failures" -gt 0 ]; then
    echo "packaging/test-maintainer-scripts.sh: $failures checks failed" >&2
    exit 1
fi
echo "maintainer scripts: every check passed"
