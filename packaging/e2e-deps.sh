#!/usr/bin/env bash
# Installs what packaging/e2e-systemd.sh needs on Debian 12 (the host of the real-systemd
# tests), on a machine that has only the base image, and makes foreign ARM binaries
# runnable (binfmt_misc), which mmdebstrap needs to configure an ARM root. Idempotent:
# with everything present it installs nothing and takes a second.
set -euo pipefail
# shellcheck source=packaging/apt-install.sh
source "$(dirname "$0")/apt-install.sh"
export DEBIAN_FRONTEND=noninteractive

packages=(
    mmdebstrap            # builds each Debian 12 root from Debian's archive
    arch-test             # lets mmdebstrap check that it can run arm64/armhf binaries
    systemd-container     # systemd-nspawn boots the amd64 root with systemd as PID 1
    qemu-system-arm       # qemu-system-aarch64 and qemu-system-arm boot the ARM systems
    qemu-user-static      # runs the ARM roots' maintainer scripts while mmdebstrap builds them
    binfmt-support        # update-binfmts registers qemu-user-static with the kernel
    e2fsprogs             # mkfs.ext4 -d: the ARM systems' disks, without a loop mount
)
install_missing packaging/e2e-deps.sh "${packages[@]}"

# binfmt_misc: the kernel runs an arm64 or armhf ELF through qemu-user-static. With no
# systemd as PID 1 (a container, or CI's machine) nothing mounts it.
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt"
fi
for format in aarch64 arm; do
    if [ ! -e "$binfmt/qemu-$format" ]; then
        update-binfmts --import "qemu-$format" >/dev/null 2>&1 || true
        update-binfmts --enable "qemu-$format"
    fi
    # F (fix binary): the interpreter is opened now, so it works inside a chroot.
    grep -qx enabled "$binfmt/qemu-$format" && grep -q '^flags: .*F' "$binfmt/qemu-$format" || {
        echo "packaging/e2e-deps.sh: qemu-$format is not registered with binfmt_misc (flag F)" >&2
        cat "$binfmt/qemu-$format" >&2 || true
        exit 1
    }
done
for tool in mmdebstrap systemd-nspawn qemu-system-aarch64 qemu-system-arm mkfs.ext4; do
    command -v "$tool" >/dev/null || { echo "packaging/e2e-deps.sh: $tool is missing" >&2; exit 1; }
done
echo "e2e deps: $(mmdebstrap --version), $(systemd-nspawn --version | head -1), $(qemu-system-aarch64 --version | head -1)"
