#!/usr/bin/env bash
# Builds every release artefact into dist/:
#   regd_VERSION-1_{amd64,arm64,armhf}.deb   Debian packages (daemon, regctl, regd-mqtt, units,
#                                            /etc/default/regd, man pages)
#   regd-VERSION-aarch64-linux-musl          static binaries for other distributions
#   regctl-VERSION-aarch64-linux-musl
#   regd-mqtt-VERSION-aarch64-linux-musl
#   SHA256SUMS
# Needs what packaging/build-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc dpkg-shlibdeps; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "packaging/build.sh: $tool is missing; run packaging/build-deps.sh first" >&2
        exit 1
    fi
done

version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
# Static musl binaries link with the linker Rust ships; no musl toolchain needed.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld

rm -rf dist
mkdir -p dist
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    echo "==> .deb for $target"
    cargo deb --locked --target "$target" --output dist/
done

echo "==> static binaries for aarch64-unknown-linux-musl"
cargo build --locked --release --target aarch64-unknown-linux-musl --bins
for binary in regd regctl regd-mqtt; do
    if [ -f "target/aarch64-unknown-linux-musl/release/$binary" ]; then
        cp "target/aarch64-unknown-linux-musl/release/$binary" "dist/$binary-$version-aarch64-linux-musl"
    fi
done

(cd dist && sha256sum -- * > SHA256SUMS)
echo "==> dist/"
ls -l dist
