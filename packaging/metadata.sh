# Sourced by the packaging scripts (from the top of the tree): sets $version and
# $binaries, the package's version and its binaries (regd, regctl, ...), from Cargo.toml.
read -r version binaries < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
package = json.load(sys.stdin)["packages"][0]
print(package["version"], *[t["name"] for t in package["targets"] if "bin" in t["kind"]])')
if [ -z "$version" ]; then
    echo "packaging: cannot read the version from Cargo.toml (cargo metadata failed)" >&2
    exit 1
fi
