# Sourced by the packaging scripts' dependency steps: `install_missing LABEL PACKAGE...`
# installs, without recommends, the packages that are not installed yet (nothing, and
# no apt call at all, when every one is present). Each caller names its packages, so a
# fresh machine gets exactly what the scripts list. apt waits up to 10 minutes for a
# lock another apt holds.
install_missing() {
    local label=$1
    shift
    local missing=() package
    for package in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$package")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "$label: installing ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
