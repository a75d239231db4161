#!/usr/bin/env bash
# Installs what packaging/build.sh and packaging/test.sh need on Debian 12:
# cross linkers, qemu-user, lintian, the Rust targets and cargo-deb.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
for tool in aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf \
    qemu-aarch64:qemu-user qemu-arm:qemu-user lintian:lintian dpkg-shlibdeps:dpkg-dev \
    curl:curl systemd-analyze:systemd; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version '^3'
fi
