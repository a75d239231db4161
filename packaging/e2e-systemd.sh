#!/usr/bin/env bash
# The packages under a real systemd: each .deb from packaging/build.sh is installed into
# a freshly built Debian 12 system that boots with systemd as PID 1, and checked there
# by packaging/e2e/guest.sh (install, healthz, curl and regctl, journald priorities, no
# seccomp or permission denials, watchdog and kill -9 restarts, systemctl restart also
# in socket mode, stop with held polls, a usage error, the upgrade, a reboot, memory,
# remove and purge). One line per check; any failure fails the script.
#   amd64  a root from mmdebstrap, booted with systemd-nspawn --boot
#   arm64  the same for arm64, with Debian's kernel, booted under qemu-system-aarch64
#          (virt, cortex-a53, 512 MB, 2 CPUs, full emulation, serial console, no network)
#   armhf  likewise under qemu-system-arm (virt, cortex-a15, linux-image-armmp; the
#          package's static ARMv6 binaries on an ARMv7 CPU, as on a Pi 2 or later:
#          Debian's armhf kernel needs ARMv7); only on request, it adds 5 to 13 minutes
#
#   packaging/e2e-systemd.sh                      # amd64 and arm64
#   REGD_E2E_ARCHES="amd64 arm64 armhf" packaging/e2e-systemd.sh
#
# Needs what packaging/e2e-deps.sh installs, the .debs in dist/ and the release binaries
# in target/ (packaging/build.sh), root, and Debian's archive (REGD_E2E_MIRROR to use
# another mirror). Everything is built afresh in a temporary directory and removed at
# the end; containers and VMs are stopped even when a check fails or the script is
# interrupted (REGD_E2E_KEEP=1 keeps the directory, for a look at what failed). Prints
# the wall time of each part.
set -euo pipefail
cd "$(dirname "$0")/.."

arches=${REGD_E2E_ARCHES:-amd64 arm64}
mirror=${REGD_E2E_MIRROR:-http://deb.debian.org/debian}
say() { printf '%s\n' "$*"; }
die() { say "packaging/e2e-systemd.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, systemd-nspawn)"
for tool in mmdebstrap systemd-nspawn qemu-system-aarch64 qemu-system-arm mkfs.ext4 cargo-deb; do
    command -v "$tool" >/dev/null || die "$tool is missing; run packaging/e2e-deps.sh (and packaging/build-deps.sh)"
done
version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')

work=$(mktemp -d /var/tmp/regd-e2e.XXXXXX)
running=() # mmdebstrap, nspawn and qemu, each the leader of its own process group
# Starts "$@" in the background in a process group of its own; sets $pid.
start() {
    setsid "$@" &
    pid=$!
    running+=("$pid")
}
# Ends a process group started by start(): asks, then kills. The container's PID 1
# (nspawn's child) is in a session of its own; killing it ends everything inside.
stop() {
    local pid=$1 child _
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    for child in $(pgrep -P "$pid" || true); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    set +e # clean up as much as possible, whatever fails
    local pid mount
    for pid in "${running[@]}"; do stop "$pid"; done
    # mmdebstrap unmounts what it mounted, unless it was killed.
    for mount in $(findmnt -rn -o TARGET | grep "^$work/" | sort -r); do umount -l "$mount"; done
    if [ -n "${REGD_E2E_KEEP:-}" ]; then
        say "kept $work (REGD_E2E_KEEP is set)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { echo $((SECONDS - $1)); }
timings=()

# A Debian 12 root for $1 in $2; $3 is the kernel package ("" for none).
build_root() {
    local arch=$1 root=$2 kernel=$3
    local include=systemd,systemd-sysv,dbus,curl,procps
    local hooks=()
    if [ -n "$kernel" ]; then
        include="$include,udev,kmod,initramfs-tools,$kernel"
        # Only what mounts the root: the default (MODULES=most) takes more than 13
        # minutes under emulation. 9p is loaded from the root later.
        hooks+=(--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
            echo MODULES=list >"$1/etc/initramfs-tools/conf.d/regd-e2e"
            printf "%s\n" virtio_mmio virtio_pci virtio_blk ext4 >"$1/usr/share/initramfs-tools/modules.d/regd-e2e"')
        hooks+=(--customize-hook='printf "/dev/vda / ext4 rw,errors=remount-ro 0 1\ne2e /e2e 9p trans=virtio,version=9p2000.L,msize=262144 0 0\n" >"$1/etc/fstab"
            printf "%s\n" 9p 9pnet_virtio >"$1/etc/modules-load.d/regd-e2e.conf"')
    fi
    # In the background, so that an interrupt is handled at once (and stops it).
    start mmdebstrap --quiet --architectures="$arch" --variant=apt --include="$include" \
        "${hooks[@]}" \
        --customize-hook='echo regd-e2e >"$1/etc/hostname"
            printf "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 regd-e2e\n" >"$1/etc/hosts"
            mkdir -p "$1/e2e"
            # apt-daily would try the network (there is none) and fail a unit.
            for timer in apt-daily apt-daily-upgrade; do ln -sf /dev/null "$1/etc/systemd/system/$timer.timer"; done' \
        --customize-hook="cp packaging/e2e/regd-e2e.service \"\$1/etc/systemd/system/\"
            ln -s /etc/systemd/system/regd-e2e.service \"\$1/etc/systemd/system/multi-user.target.wants/\"" \
        bookworm "$root" "$mirror" </dev/null
    wait "$pid"
}

# Prints new result lines of $1 (for arch $2) as they come; $printed counts them.
show_results() {
    local file=$1 arch=$2 total
    [ -f "$file" ] || return 0
    total=$(wc -l <"$file")
    if [ "$total" -gt "$printed" ]; then
        tail -n "+$((printed + 1))" "$file" | head -n "$((total - printed))" | sed "s/^/$arch: /"
        printed=$total
    fi
}

# Runs "$@" (one boot of a container or VM) in the background until it exits or
# $limit seconds pass, streaming results; sets $status.
run_boot() {
    local limit=$1; shift
    start "$@" </dev/null >>"$console" 2>&1
    local deadline=$((SECONDS + limit))
    while kill -0 "$pid" 2>/dev/null; do
        show_results "$share/results" "$arch"
        if [ $SECONDS -ge "$deadline" ]; then
            say "$arch: FAIL: boot: still running after $limit s; stopped"
            stop "$pid"
        fi
        sleep 1
    done
    status=0
    wait "$pid" || status=$?
    show_results "$share/results" "$arch"
}

test_arch() {
    local arch=$1 triple kernel qemu=() limit strip=()
    case $arch in
    amd64) triple=x86_64-unknown-linux-gnu kernel= limit=600 ;;
    arm64) triple=aarch64-unknown-linux-gnu kernel=linux-image-arm64 limit=1500 ;;
    # The armhf package holds the static ARMv6 build, which build.sh leaves unstripped.
    armhf) triple=arm-unknown-linux-musleabihf kernel=linux-image-armmp limit=1800 strip=(--strip) ;;
    *) die "unknown architecture $arch (amd64, arm64, armhf)" ;;
    esac
    local dir="$work/$arch" started=$SECONDS part
    local root="$dir/root" deb="dist/regd_${version}-1_$arch.deb"
    share="$dir/share" console="$dir/console.log" printed=0
    mkdir -p "$share"
    [ -f "$deb" ] || die "$deb missing; run packaging/build.sh"
    say "==> $arch: $deb under a real systemd"

    # The upgrade: the same build, packaged with a higher version.
    cargo deb --locked --no-build "${strip[@]}" --target "$triple" --deb-version "${version}-1+e2e1" \
        --output "$dir/upgrade/" >/dev/null 2>&1 || die "$arch: cargo deb could not package the upgrade"
    cp "$deb" "$share/regd.deb"
    cp "$dir"/upgrade/*.deb "$share/upgrade.deb"
    cp packaging/e2e/guest.sh "$share/"

    part=$SECONDS
    build_root "$arch" "$root" "$kernel" || die "$arch: mmdebstrap failed"
    timings+=("$arch: root (mmdebstrap) $(elapsed $part) s")

    if [ "$arch" = amd64 ]; then
        local boot=(systemd-nspawn --quiet --boot --directory="$root" --machine="regd-e2e-$arch"
            --register=no --keep-unit --private-network --link-journal=no --resolv-conf=off
            --timezone=off --console=read-only --bind="$share:/e2e")
    else
        part=$SECONDS
        local vmlinuz initrd
        vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -1)
        initrd=$(ls "$root"/boot/initrd.img-* | head -1)
        [ -f "$vmlinuz" ] && [ -f "$initrd" ] || die "$arch: no kernel or initramfs in the root"
        cp "$vmlinuz" "$dir/vmlinuz"
        cp "$initrd" "$dir/initrd.img"
        truncate -s 3G "$dir/disk.img"
        mkfs.ext4 -q -F -L root -d "$root" "$dir/disk.img"
        rm -rf "$root"
        timings+=("$arch: kernel, initramfs and disk $(elapsed $part) s")
        case $arch in
        arm64) qemu=(qemu-system-aarch64 -M virt -cpu cortex-a53) ;;
        armhf) qemu=(qemu-system-arm -M virt,highmem=off -cpu cortex-a15) ;;
        esac
        local boot=("${qemu[@]}" -m 512 -smp 2 -no-reboot -display none -monitor none -nic none
            -serial "file:$dir/serial.log"
            -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img"
            -append "root=/dev/vda rw console=ttyAMA0 panic=-1"
            -drive "file=$dir/disk.img,format=raw,if=none,id=disk" -device virtio-blk-device,drive=disk
            -fsdev "local,id=e2e,path=$share,security_model=none" -device virtio-9p-device,fsdev=e2e,mount_tag=e2e)
    fi

    # Phase 1 ends in a reboot (nspawn exits 133; qemu, with -no-reboot, exits 0), so
    # boot again for phase 2, which powers off.
    local attempt
    for attempt in 1 2; do
        part=$SECONDS
        run_boot "$limit" "${boot[@]}"
        timings+=("$arch: boot and phase $attempt $(elapsed $part) s (exit $status)")
        grep -qx done "$share/results" 2>/dev/null && [ "$(cat "$share/phase" 2>/dev/null)" = 2 ] && break
        if [ "$(cat "$share/phase" 2>/dev/null)" != 2 ] || { [ "$status" != 133 ] && [ "$status" != 0 ]; }; then
            break
        fi
    done
    timings+=("$arch: total $(elapsed $started) s")

    local verdict=ok
    if ! grep -qx done "$share/results" 2>/dev/null || [ "$(cat "$share/phase" 2>/dev/null)" != 2 ]; then
        say "$arch: FAIL: the checks did not run to the end (see the log below)"
        verdict=failed
    fi
    if grep -q '^FAIL' "$share/results" 2>/dev/null; then
        verdict=failed
    fi
    if [ "$verdict" = failed ]; then
        for file in journal-on-failure.txt guest.log; do
            [ -f "$share/$file" ] && { say "--- $arch: last lines of $file"; tail -n 40 "$share/$file"; }
        done
        for file in "$console" "$dir/serial.log"; do
            [ -f "$file" ] && { say "--- $arch: last lines of $(basename "$file")"; tail -n 30 "$file"; }
        done
        failed_arches+=("$arch")
    fi
    # Free the disk before the next architecture.
    [ -n "${REGD_E2E_KEEP:-}" ] || rm -rf "$dir"
}

failed_arches=()
for arch in $arches; do
    test_arch "$arch"
done
say "==> wall time"
printf '%s\n' "${timings[@]}"
[ ${#failed_arches[@]} -eq 0 ] || die "failed on: ${failed_arches[*]}"
say "real systemd: every check passed on $arches"
