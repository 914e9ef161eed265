#!/usr/bin/env bash
# Build and test weft on CPython versions that only Debian sid ships (3.14, 3.15),
# inside a Debian sid chroot made with debootstrap and cached under .ci-work/.
#
#   bash scripts/sid.sh             # test 3.14 and 3.15
#   bash scripts/sid.sh 3.14        # test one version
#   bash scripts/sid.sh --prepare   # only create (or check) the cached sid root
#   bash scripts/sid.sh --shell     # interactive shell in the chroot, mounts set up
#   bash scripts/sid.sh --exec CMD [ARGS...]  # run CMD in the chroot, mounts set up
#                                   # (the repo is /src there; scripts/build-wheels.sh
#                                   # and scripts/test-wheels.sh use this)
#
# Needs root (debootstrap, chroot, mount). The host's Rust toolchain and this
# repo are bind-mounted into the chroot; all mounts are made inside a private
# mount namespace (unshare -m), so they vanish when the script ends however it
# ends (even on SIGKILL): the host never keeps stale mounts. An EXIT trap also
# unmounts explicitly.
#
# Rebuild the root from scratch: rm -rf .ci-work/sid-root  (only when no
# sid.sh is running). It is also rebuilt when SID_PACKAGES below changes.
# Env: WEFT_SID_MIRROR (default http://deb.debian.org/debian), WEFT_CI_WORK,
#      WEFT_SID_JIT=0 to skip the second pytest run with PYTHON_JIT=1,
#      WEFT_SID_CONFORMANCE=0 to skip greenlet's own suite.
set -euo pipefail
# shellcheck source=scripts/ci-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ci-lib.sh"

SID_ROOT="$WEFT_CI_WORK/sid-root"
SID_MIRROR="${WEFT_SID_MIRROR:-http://deb.debian.org/debian}"
DEFAULT_VERSIONS="3.14 3.15"
# python3.X-dev: headers + python3.X-config for pyo3; -venv: ensurepip for venvs.
# gcc/libc6-dev: the linker rustc drives (and any sdist a test dep may need);
# g++: greenlet's suite builds a C++ helper extension (python -m weft.conformance greenlet).
SID_PACKAGES="python3.14-dev,python3.15-dev,python3.14-venv,python3.15-venv,gcc,g++,libc6-dev,ca-certificates"
STAMP="$SID_ROOT/.weft-sid-stamp"
# Where things live inside the chroot.
IN_RUST=/opt/host-rust          # host toolchain (read-only bind)
IN_SRC=/src                     # this repo (read-write bind)
IN_CACHE=/var/cache/weft        # CARGO_HOME, target dirs, venvs: persist with the root

# ---------------------------------------------------------------------------
# Mount helpers
# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
    local dir
    dir="$(readlink -f "$1")"
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

unmount_all_under() {
    local m
    for m in $(mounts_under "$1"); do
        umount "$m" 2>/dev/null || umount -l "$m" || echo "WARNING: could not unmount $m" >&2
    done
}

# ---------------------------------------------------------------------------
# --prepare: make sure debootstrap is there and the sid root is built.
ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    echo "installing debootstrap (apt-get)"
    apt-get update -qq
    apt-get install -y -qq debootstrap >/dev/null
}

prepare_root() {
    [ "$(id -u)" -eq 0 ] || die "scripts/sid.sh needs root (debootstrap, chroot, mount)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SID_PACKAGES" ]; then
        echo "sid root cached: $SID_ROOT ($(cat "$SID_ROOT/etc/debian_version" 2>/dev/null))"
        return 0
    fi
    ensure_debootstrap
    # A stale root (or a half-made one from an interrupted run): never delete
    # through live mounts (bind-mounted host dirs would be deleted with it).
    local tmp="$SID_ROOT.new" d
    for d in "$SID_ROOT" "$tmp"; do
        if [ -e "$d" ]; then
            unmount_all_under "$d"
            [ -z "$(mounts_under "$d")" ] || die "mounts remain under $d; not deleting it"
            rm -rf --one-file-system "$d"
        fi
    done
    mkdir -p "$WEFT_CI_WORK"
    echo "debootstrap sid into $tmp (about a minute)"
    # debootstrap mounts /proc etc. in the target itself: keep those in a
    # private namespace too, so an interrupted debootstrap leaves nothing.
    if ! unshare --mount --propagation private \
        debootstrap --variant=minbase --include="$SID_PACKAGES" \
        sid "$tmp" "$SID_MIRROR" >"$WEFT_CI_WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WEFT_CI_WORK/debootstrap.log" >&2
        die "debootstrap failed (full log: $WEFT_CI_WORK/debootstrap.log)"
    fi
    chroot "$tmp" apt-get clean
    echo "$SID_PACKAGES" >"$tmp/.weft-sid-stamp"
    mv "$tmp" "$SID_ROOT"
    echo "sid root ready: $(cat "$SID_ROOT/etc/debian_version")"
}

# ---------------------------------------------------------------------------
# --in-namespace: runs under unshare -m; mounts, then chroots per version.
bind_mount() {   # bind_mount SRC DST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

in_namespace() {
    trap 'unmount_all_under "$SID_ROOT"' EXIT
    # Make sure nothing we mount propagates back to the host namespace.
    mount --make-rprivate /

    # The toolchain rustup selected on the host (a rustup toolchain dir holds
    # cargo too). Using it directly avoids rustup's proxies in the chroot.
    local sysroot
    sysroot="$(rustc --print sysroot)"
    [ -x "$sysroot/bin/cargo" ] || die "no cargo in $sysroot/bin (rustc --print sysroot)"

    mount -t proc proc "$SID_ROOT/proc"
    mount --rbind /dev "$SID_ROOT/dev"          # /dev/null, /dev/urandom, /dev/shm
    bind_mount "$sysroot" "$SID_ROOT$IN_RUST" ro
    bind_mount "$WEFT_REPO" "$SID_ROOT$IN_SRC"
    cp -L /etc/resolv.conf "$SID_ROOT/etc/resolv.conf"   # PyPI / crates.io from inside
    # Trust the host's extra CAs too: this network may intercept TLS with a
    # local CA that only the host's /usr/local/share/ca-certificates knows.
    local ca_dir="$SID_ROOT/usr/local/share/ca-certificates/host"
    rm -rf "$ca_dir" && mkdir -p "$ca_dir"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp -L /usr/local/share/ca-certificates/*.crt "$ca_dir/"
    fi
    chroot "$SID_ROOT" update-ca-certificates --fresh >/dev/null 2>&1 \
        || echo "WARNING: update-ca-certificates failed in the sid root" >&2

    if [ "${1:-}" = --shell ]; then
        chroot "$SID_ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" bash -l || true
        return 0
    fi
    if [ "${1:-}" = --exec ]; then
        shift
        chroot "$SID_ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" "$@"
        return
    fi
    local v
    for v in "$@"; do
        chroot "$SID_ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" \
            bash "$IN_SRC/scripts/sid.sh" --in-chroot "$v"
    done
}

# The chroot gets a clean environment (env -i): only what is listed here.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CHROOT_ENV=(
    HOME=/root LANG=C.UTF-8 CI="${CI:-}"
    PATH="$IN_RUST/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    CARGO_HOME="$IN_CACHE/cargo-home"
    WEFT_CI_WORK="$IN_CACHE"
    TERM="${TERM:-dumb}"
    WEFT_SID_JIT="${WEFT_SID_JIT:-1}"
    WEFT_SID_CONFORMANCE="${WEFT_SID_CONFORMANCE:-1}"
    # pip bundles its own CA list (certifi); point everything at the system one.
    PIP_CERT="$CA_BUNDLE" REQUESTS_CA_BUNDLE="$CA_BUNDLE" SSL_CERT_FILE="$CA_BUNDLE"
    CARGO_HTTP_CAINFO="$CA_BUNDLE" CURL_CA_BUNDLE="$CA_BUNDLE"
)
# Pass proxy and package-index settings through, if the host has any.
for _var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
            PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT; do
    if [ -n "${!_var:-}" ]; then CHROOT_ENV+=("$_var=${!_var}"); fi
done

# ---------------------------------------------------------------------------
# --in-chroot V: build the wheel with maturin and run pytest (inside sid).
in_chroot() {
    local v="$1"
    local py="/usr/bin/python$v" venv="$IN_CACHE/venv-$v" wheels="$IN_CACHE/wheels-$v"
    [ -x "$py" ] || die "python$v is not in the sid root (add python$v-dev,python$v-venv to SID_PACKAGES)"
    cd "$IN_SRC"
    section "sid chroot: $("$py" -VV | head -n1); $(cargo --version)"
    "$py" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip maturin

    section "sid chroot: maturin build -i python$v"
    rm -rf "$wheels"
    CARGO_TARGET_DIR="$IN_CACHE/target-py$v" \
        "$venv/bin/maturin" build --release -i "$py" -o "$wheels"
    local whl
    whl="$(ls "$wheels"/*.whl)"
    "$venv/bin/python" -m pip install -q "$whl[test]"
    "$venv/bin/python" -c 'import sys, weft; print("weft", weft.__version__, "on", sys.version)'

    section "sid chroot: pytest on CPython $v"
    WEFT_RING_TASKLETS="${WEFT_RING_TASKLETS:-100000}" run_pytest "$venv/bin/python" -p no:cacheprovider

    # Debian builds 3.14+ with the experimental JIT compiled in but off
    # (--enable-experimental-jit=yes-off); PYTHON_JIT=1 turns it on. The JIT
    # keeps executor state in the thread state, which a stack switcher touches.
    if [ "${WEFT_SID_JIT:-1}" = 1 ] && "$venv/bin/python" -c 'import sys; sys.exit(not sys._jit.is_available())' 2>/dev/null; then
        section "sid chroot: pytest on CPython $v with the JIT on (PYTHON_JIT=1)"
        PYTHON_JIT=1 "$venv/bin/python" -c 'import sys; assert sys._jit.is_enabled(), "PYTHON_JIT=1 did not enable the JIT"'
        WEFT_RING_TASKLETS="${WEFT_RING_TASKLETS:-100000}" PYTHON_JIT=1 run_pytest "$venv/bin/python" -p no:cacheprovider
    fi

    # greenlet's own suite: the GC and thread-state paths that differ most
    # between versions are what it checks hardest. It gates itself (exit 1
    # only on a failure not listed as known in weft/conformance.py).
    if [ "${WEFT_SID_CONFORMANCE:-1}" = 1 ]; then
        section "sid chroot: greenlet's own suite on CPython $v"
        "$venv/bin/python" -m pip install -q objgraph psutil setuptools
        (cd /tmp && "$venv/bin/python" -m weft.conformance greenlet)
    fi
}

# ---------------------------------------------------------------------------
case "${1:-}" in
    --prepare)
        prepare_root ;;
    --in-namespace)
        shift; in_namespace "$@" ;;
    --in-chroot)
        in_chroot "$2" ;;
    --shell)
        prepare_root
        exec unshare --mount --propagation private bash "$0" --in-namespace --shell ;;
    --exec)
        shift
        [ "$#" -gt 0 ] || die "--exec needs a command"
        prepare_root
        exec unshare --mount --propagation private bash "$0" --in-namespace --exec "$@" ;;
    -h|--help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' ;;
    *)
        versions=("$@")
        [ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"$DEFAULT_VERSIONS"
        for v in "${versions[@]}"; do
            [[ "$v" =~ ^3\.[0-9]+$ ]] || die "bad version '$v' (expected e.g. 3.14)"
        done
        prepare_root
        exec unshare --mount --propagation private bash "$0" --in-namespace "${versions[@]}" ;;
esac
