#!/usr/bin/env bash
# Builds every release artefact into dist/:
#   regd_VERSION-1_{amd64,arm64}.deb         Debian packages (regd, regctl, regd-mqtt, units,
#                                            /etc/default/regd, man pages)
#   regd_VERSION-1_armhf.deb                 the same for every 32-bit Raspberry Pi OS /
#                                            Debian armhf, Pi Zero and 1 (ARMv6) included:
#                                            static musl binaries built for the ARM1176
#   BIN-VERSION-aarch64-linux-musl           static binaries for other distributions,
#   BIN-VERSION-armv6-linux-musleabihf       one per binary of the package (regd, regctl, …)
#   SHA256SUMS
# Needs what packaging/build-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-zigbuild lives in the scripts folder of the Python that build-deps.sh used.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
for tool in cargo-deb cargo-zigbuild aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc arm-linux-gnueabihf-strip dpkg-shlibdeps; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "packaging/build.sh: $tool is missing; run packaging/build-deps.sh first" >&2
        exit 1
    fi
done

source packaging/metadata.sh
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Static musl binaries link with the linker Rust ships; no musl toolchain needed.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld

# Copies each binary of the package that $1 holds to dist/BIN-VERSION-$2.
copy_binaries() {
    local from=$1 suffix=$2 binary
    for binary in $binaries; do
        if [ -f "$from/$binary" ]; then
            cp "$from/$binary" "dist/$binary-$version-$suffix"
        fi
    done
}

# cargo-deb writes `Depends:` even when `$auto` finds nothing, as for static binaries,
# and an empty field is wrong in a control file (lintian: empty-field). Drops it from
# the control member; the data member (every file of the package) is kept byte for
# byte, and the control files keep their modes, owners and dates.
drop_empty_depends() {
    local deb=$1 work members entries mtime
    members=$(ar t "$deb" | tr '\n' ' ')
    if [ "$members" != "debian-binary control.tar.xz data.tar.xz " ]; then
        echo "packaging/build.sh: $deb holds ${members}where cargo-deb's defaults give debian-binary control.tar.xz data.tar.xz" >&2
        return 1
    fi
    work=$(mktemp -d)
    cp "$deb" "$work/package.deb"
    (
        cd "$work"
        ar x package.deb
        mkdir control
        # -p: the modes as archived, whatever the umask of whoever builds.
        tar -xpJf control.tar.xz -C control
        if grep -q '^Depends: *$' control/control; then
            mtime=$(stat -c %Y control/control)
            sed -i '/^Depends: *$/d' control/control
            touch -d "@$mtime" control/control
            entries=$(tar -tJf control.tar.xz)
            # shellcheck disable=SC2086 # one entry per word: control file names have no spaces
            tar -cJf control.tar.xz -C control --owner=0 --group=0 --numeric-owner \
                --no-recursion $entries
            rm package.deb
            ar rcD package.deb debian-binary control.tar.xz data.tar.xz
        fi
    )
    cp "$work/package.deb" "$deb"
    rm -rf "$work"
}

rm -rf dist
mkdir -p dist
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    echo "==> .deb for $target"
    cargo deb --locked --target "$target" --output dist/
done

echo "==> static binaries for aarch64-unknown-linux-musl"
cargo build --locked --release --target aarch64-unknown-linux-musl --bins --features "$bin_features"
copy_binaries target/aarch64-unknown-linux-musl/release aarch64-linux-musl

# The Pi Zero, Zero W and 1 are ARMv6 (ARM1176JZF-S); Debian's armhf is ARMv7 and dies
# there with SIGILL. rustup's prebuilt std for ARMv6 cannot be downloaded here, so std
# is built for the ARM1176 from source (nightly, -Zbuild-std), and zig links it with a
# static musl. These binaries serve
# every 32-bit ARM board: the armhf .deb carries them (packaging/README.md says why).
# link-self-contained=no: zig's C start files and musl, not rustup's (absent here).
# -A linker-messages: zig notes that rustup's std folder for the target is missing,
# which -Zbuild-std replaces. Symbols are kept in target/ for the instruction scan
# of packaging/test.sh (they tell code from data and name each routine).
echo "==> static ARMv6 binaries for arm-unknown-linux-musleabihf (ARM1176JZF-S)"
started=$SECONDS
CARGO_TARGET_ARM_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS="-C target-cpu=arm1176jzf-s -C link-self-contained=no -A linker-messages" \
    CARGO_PROFILE_RELEASE_STRIP=false \
    cargo +nightly zigbuild --locked --release -Zbuild-std=std,panic_abort \
    --target arm-unknown-linux-musleabihf --bins --features "$bin_features"
echo "ARMv6 build: $((SECONDS - started)) s"
# cargo-deb warns that it finds no $auto dependencies: right, static binaries need none.
cargo deb --locked --target arm-unknown-linux-musleabihf --no-build --strip --output dist/
drop_empty_depends "dist/regd_${version}-1_armhf.deb"
# Stripped as cargo-deb strips the packaged copies (same tool, same options), so the
# static binaries and the packaged ones are the same bytes; test.sh checks that.
for binary in $binaries; do
    if [ -f "target/arm-unknown-linux-musleabihf/release/$binary" ]; then
        arm-linux-gnueabihf-strip --strip-unneeded --remove-section=.comment --remove-section=.note \
            -o "dist/$binary-$version-armv6-linux-musleabihf" "target/arm-unknown-linux-musleabihf/release/$binary"
    fi
done

(cd dist && sha256sum -- * > SHA256SUMS)
echo "==> dist/"
ls -l dist
