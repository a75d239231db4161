# Sourced by the packaging scripts (from the top of the tree): sets, from Cargo.toml,
#   $version       the package's version
#   $binaries      its binaries (regd, regctl, ...), separated by spaces
#   $bin_features  the cargo features those binaries require, comma-separated (maybe
#                  none), so `--bins --features "$bin_features"` builds every one of them
#   $description   its one-line description (the packages' synopsis)
{ read -r version; read -r binaries; read -r bin_features; read -r description; } < <(cargo metadata --no-deps --format-version 1 |
    python3 -c '
import json, sys
package = json.load(sys.stdin)["packages"][0]
bins = [t for t in package["targets"] if "bin" in t["kind"]]
print(package["version"])
print(" ".join(t["name"] for t in bins))
print(",".join(sorted({f for t in bins for f in t.get("required-features", [])})))
print(package["description"])')
if [ -z "$version" ]; then
    echo "packaging: cannot read the version from Cargo.toml (cargo metadata failed)" >&2
    exit 1
fi
