#!/usr/bin/env bash
# Installs everything packaging/build.sh and packaging/test.sh need on Debian 12, on a
# machine that has only the base image, then proves the toolchains work (each cross C
# library links, qemu knows the ARM1176, zig runs). Idempotent: when everything is
# present it installs nothing and takes a few seconds.
set -euo pipefail
# shellcheck source=packaging/apt-install.sh
source "$(dirname "$0")/apt-install.sh"
export DEBIAN_FRONTEND=noninteractive

# Debian packages, each named for what needs it. They are installed without their
# Recommends, so every library is named here too: the cross C libraries are only
# Recommends of the cross gcc, and without them the ARM links fail (Scrt1.o, crti.o).
packages=(
    gcc-aarch64-linux-gnu   # linker for aarch64-unknown-linux-gnu
    libc6-dev-arm64-cross   # its C library and start files; the sysroot qemu-aarch64 -L uses
    gcc-arm-linux-gnueabihf # linker for armv7-unknown-linux-gnueabihf; builds the SIGILL control
    libc6-dev-armhf-cross   # its C library and start files; the sysroot qemu-arm -L uses
    qemu-user               # qemu-aarch64, qemu-arm (-cpu arm1176 for ARMv6) in test.sh
    llvm                    # llvm-objdump, llvm-objcopy: the ARMv6 instruction scan in test.sh
    dpkg-dev                # dpkg-shlibdeps, behind cargo-deb's Depends: $auto
    lintian                 # test.sh lints every .deb
    systemd                 # systemd-analyze verify / security in test.sh
    curl                    # test.sh talks to the daemons
    file                    # test.sh checks what each binary is
)
install_missing build-deps "${packages[@]}"

# Rust: the stable cross targets (armv7 for the glibc baseline of bench-arm32.sh), and
# nightly with its std sources for the ARMv6 build: rustup's prebuilt std for the ARMv6
# targets cannot be downloaded here (404), so build.sh builds std for the ARM1176 itself.
installed_targets=$(rustup target list --installed)
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
        rustup target add "$target"
    fi
done
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal --component rust-src
elif ! rustup component list --toolchain nightly --installed | grep -qx 'rust-src'; then
    rustup component add --toolchain nightly rust-src
fi
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version '^3'
fi

# zig links the static musl ARMv6 binaries (with a musl it builds itself);
# cargo-zigbuild drives it from cargo. Both come from PyPI, pinned to versions that
# were verified together. build.sh finds cargo-zigbuild in this Python's scripts folder.
python_tools=(ziglang==0.17.1 cargo-zigbuild==0.24.1)
installed_python_tools=$(python3 -m pip list --format=freeze --disable-pip-version-check 2>/dev/null)
for requirement in "${python_tools[@]}"; do
    if ! grep -qixF "$requirement" <<<"$installed_python_tools"; then
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${python_tools[@]}"
        break
    fi
done
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')

# Prove the toolchains, so a missing piece fails here, by name, and not deep in a build.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int main(void) { return 0; }\n' >"$probe/probe.c"
for gcc in aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc; do
    "$gcc" -o "$probe/probe" "$probe/probe.c" ||
        { echo "build-deps: $gcc cannot link a program (is its libc6-dev-*-cross missing?)" >&2; exit 1; }
done
grep -qw arm1176 <<<"$(qemu-arm -cpu help)" || { echo "build-deps: qemu-arm has no arm1176 CPU" >&2; exit 1; }
echo "build-deps: ready (zig $(python3 -m ziglang version), $("$scripts/cargo-zigbuild" --version)," \
    "$(rustup run nightly rustc --version))"
