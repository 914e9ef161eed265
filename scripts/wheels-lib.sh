# Shared helpers for scripts/build-wheels.sh and scripts/test-wheels.sh
# (sourced, not run; both also run inside the Debian sid root, see sid.sh --exec).
# shellcheck shell=bash
# Functions here are called inside $(...): let a failure there stop the script.
shopt -s inherit_errexit

# The versions a wheel is built for, and where each one's interpreter comes
# from. x86-64: pyenv on the host for 3.11-3.13, Debian sid (scripts/sid.sh's
# root) for 3.14/3.15. AArch64: Debian's arm64 CPython through multiarch (its
# headers, its _sysconfigdata, its interpreter run under qemu-user):
# bookworm's 3.11 on the host, sid's 3.13-3.15 in the sid root. No Debian
# release has an arm64 CPython 3.12: that wheel is built against pyenv's
# 3.12 headers and never run (see docs/wheels.md).
# shellcheck disable=SC2034  # used by the scripts that source this file
WHEEL_VERSIONS_DEFAULT="3.11 3.12 3.13 3.14 3.15"
# shellcheck disable=SC2034
WHEEL_ARCHES_DEFAULT="x86_64 aarch64"
# manylinux_2_17 (manylinux2014): glibc 2.17, what zig links against. See docs/wheels.md.
WHEEL_COMPAT=manylinux2014
WHEEL_GLIBC_TAG=manylinux_2_17
# The build tools, pinned (all from PyPI).
WHEEL_TOOLS="maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2"

# where_built ARCH V: "host" or "sid"
where_built() {
    case "$1:$2" in
        x86_64:3.14|x86_64:3.15) echo sid ;;
        aarch64:3.13|aarch64:3.14|aarch64:3.15) echo sid ;;
        *) echo host ;;
    esac
}

triple() { echo "$1-unknown-linux-gnu"; }

# cp tag of a version: 3.12 -> cp312
cptag() { echo "cp${1/./}"; }

# wheel_name_glob V ARCH: the file name a built wheel has.
wheel_glob() { echo "weft-*-$(cptag "$1")-$(cptag "$1")-${WHEEL_COMPAT}_$2.${WHEEL_GLIBC_TAG}_$2.whl"; }

# ensure_wheel_tools PYTHON VENV: a venv with maturin, ziglang and auditwheel.
ensure_wheel_tools() {
    local py="$1" venv="$2" stamp="$2/.weft-wheel-tools"
    if [ -x "$venv/bin/maturin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$WHEEL_TOOLS" ]; then
        return 0
    fi
    echo "making the wheel tools venv $venv ($WHEEL_TOOLS)"
    "$py" -m venv --clear "$venv"
    # shellcheck disable=SC2086  # a list of requirements
    "$venv/bin/python" -m pip install -q --upgrade pip $WHEEL_TOOLS
    echo "$WHEEL_TOOLS" >"$stamp"
}

# ensure_binfmt_aarch64: arm64 programs run through qemu-user (binfmt_misc,
# Debian's qemu-user-static entry with flag F, so it works inside chroots too).
# Registered here -> unregistered by unregister_binfmt_aarch64 (call it on EXIT).
BINFMT_REGISTERED_HERE=0
ensure_binfmt_aarch64() {
    if ! [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
        apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
        grep -q ':[A-Z]*F[A-Z]*$' "$conf" || die "$conf lacks binfmt flag F"
        cat "$conf" >/proc/sys/fs/binfmt_misc/register
        BINFMT_REGISTERED_HERE=1
    fi
}
unregister_binfmt_aarch64() {
    if [ "$BINFMT_REGISTERED_HERE" = 1 ] && [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64 || true
    fi
}

# ensure_arm64_python V DIR: Debian's arm64 CPython V beside the native one
# (multiarch: libpython3.V-dev:arm64 brings the arm64 pyconfig.h,
# _sysconfigdata and lib-dynload; the shared headers and pure-Python stdlib are
# the same files for both). Its interpreter binary (python3.V-minimal:arm64,
# which cannot be co-installed) is unpacked into DIR. Prints DIR/python3.V.
ensure_arm64_python() {
    local v="$1" dir="$2"
    ensure_arm64_arch
    if ! dpkg -s "libpython$v-dev:arm64" >/dev/null 2>&1; then
        apt-get install -y -qq --no-install-recommends "libpython$v-dev:arm64" >/dev/null 2>&1 ||
            { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "libpython$v-dev:arm64" >/dev/null; }
    fi
    local want
    want="$(dpkg-query -W -f='${Version}' "libpython$v-stdlib:arm64")"
    if [ ! -x "$dir/python$v" ] || [ "$(cat "$dir/python$v.version" 2>/dev/null)" != "$want" ]; then
        local tmp
        tmp="$(mktemp -d)"
        (cd "$tmp" && apt-get download -q "python$v-minimal:arm64=$want" >/dev/null 2>&1) ||
            die "apt-get download python$v-minimal:arm64=$want failed"
        dpkg -x "$tmp"/python"$v"-minimal_*_arm64.deb "$tmp/x"
        mkdir -p "$dir"
        cp "$tmp/x/usr/bin/python$v" "$dir/python$v"
        echo "$want" >"$dir/python$v.version"
        rm -rf "$tmp"
    fi
    echo "$dir/python$v"
}

# Debian multiarch: arm64 packages installable beside the native ones.
ensure_arm64_arch() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    if ! apt-cache show libc6:arm64 >/dev/null 2>&1; then
        # Check-Valid-Until=false: the sid root's mirror has served Release
        # files that this machine's clock finds expired (signatures are still
        # checked; debootstrap does not look at the date at all).
        apt-get -o Acquire::Check-Valid-Until=false update -qq >&2 || die "apt-get update failed"
    fi
}

# An aarch64 Rust std: Debian's (rustc-web + libstd-rust-web-dev:arm64 on
# bookworm, rustc + libstd-rust-dev:arm64 later), used as RUSTC with rustup's
# cargo. Prints the rustc to use.
ensure_aarch64_rustc() {
    local r
    for r in /usr/bin/rustc /usr/bin/rustc-web; do
        if [ -x "$r" ] && ls "$("$r" --print sysroot)"/lib/rustlib/aarch64-unknown-linux-gnu/lib/libstd-*.rlib >/dev/null 2>&1; then
            echo "$r"; return 0
        fi
    done
    ensure_arm64_arch
    # The workspace needs Rust 1.85+: bookworm's rustc is 1.63, its rustc-web current.
    local pkgs="rustc libstd-rust-dev:arm64" cand
    cand="$(apt-cache policy rustc | sed -n 's/^ *Candidate: *//p')"
    if ! dpkg --compare-versions "${cand:-0}" ge 1.85; then pkgs="rustc-web libstd-rust-web-dev:arm64"; fi
    # shellcheck disable=SC2086  # a list of package names
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null || die "apt-get install $pkgs failed"
    for r in /usr/bin/rustc /usr/bin/rustc-web; do
        if [ -x "$r" ] && ls "$("$r" --print sysroot)"/lib/rustlib/aarch64-unknown-linux-gnu/lib/libstd-*.rlib >/dev/null 2>&1; then
            echo "$r"; return 0
        fi
    done
    die "no rustc with an aarch64 std after installing $pkgs"
}

# PATH without any directory that holds cargo (or rustup's proxies).
path_without_cargo() {
    local out="" d
    local IFS=:
    for d in $PATH; do
        [ -n "$d" ] || continue
        if [ -e "$d/cargo" ] || [ -e "$d/rustup" ]; then continue; fi
        out="${out:+$out:}$d"
    done
    echo "$out"
}
