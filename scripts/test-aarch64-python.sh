#!/usr/bin/env bash
# Builds weft's Python extension for aarch64 and runs its pytest suite on an
# aarch64 CPython (Debian bookworm's 3.11, arm64) under qemu-user emulation.
# Slow and not part of scripts/test.sh: 6-11 min to debootstrap the arm64 root
# the first time (cached afterwards), 1-2 min to cross-build, 8-11 min for the
# tests under emulation (18 min in all on a 2-core machine, new root).
#
#   bash scripts/test-aarch64-python.sh [PYTEST ARGS...]   # default: tests
#
# How: scripts/test-aarch64.sh --tools provides the cross linker, qemu and an
# aarch64 Rust std; qemu-user-static is registered with binfmt_misc (flag F, so
# it works inside the chroot) unless an aarch64 handler already is; debootstrap
# makes an arm64 Debian root under $WEFT_CI_WORK/arm64-root; the extension is
# cross-compiled on the host against that root's CPython (pyo3's cross-compile
# variables; weft-pystate's build script asks the chroot's python3 for its
# include dir); then the package and tests are copied into the root and pytest
# runs there in a venv, inside a private mount namespace (proc mounted there).
#
# Deselected: test_thread_exit_with_suspended_greenlets_flat_rss_subprocess.
# Under qemu-user every finished OS thread leaves memory behind (about 270 KiB
# per thread, the same with or without greenlets), so that RSS bound cannot
# hold under emulation; it says nothing about weft.
#
# Needs root. Env: WEFT_CI_WORK, WEFT_ARM64_MIRROR (default
# http://deb.debian.org/debian), WEFT_AARCH64_PYTEST_TIMEOUT (default 3600 s).
set -euo pipefail
# shellcheck source=scripts/ci-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ci-lib.sh"
cd "$WEFT_REPO"

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, binfmt_misc)"
ROOT="$WEFT_CI_WORK/arm64-root"
MIRROR="${WEFT_ARM64_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-dev,python3-venv,ca-certificates"
STAMP="$ROOT/.weft-arm64-stamp"
TEST_DEPS="pytest hypothesis psutil execnet==2.1.2"
PYTEST_TIMEOUT="${WEFT_AARCH64_PYTEST_TIMEOUT:-3600}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEFT_CI_WORK/target-aarch64}"

section "tools"
tools_out="$(bash scripts/test-aarch64.sh --tools)" || die "scripts/test-aarch64.sh --tools failed"
echo "$tools_out"
RUSTC_AARCH64="$(printf '%s\n' "$tools_out" | sed -n 's/^RUSTC=//p' | tail -n1)"
[ -n "$RUSTC_AARCH64" ] || die "no aarch64 Rust toolchain (see the SKIP line above)"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get install -y -qq --no-install-recommends qemu-user-static debootstrap >/dev/null
fi

# binfmt_misc: arm64 programs in the chroot (apt, python, the tests' own
# subprocesses) run through qemu-aarch64-static.
REGISTERED_HERE=0
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -f "$conf" ] || die "$conf missing (qemu-user-static)"
    # Debian's entry has flag F: the kernel opens the (static) interpreter now,
    # so it need not exist inside the chroot.
    grep -q ':[A-Z]*F[A-Z]*$' "$conf" || die "$conf lacks binfmt flag F"
    cat "$conf" >/proc/sys/fs/binfmt_misc/register
    REGISTERED_HERE=1
fi
cleanup() {
    if [ "$REGISTERED_HERE" = 1 ] && [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64 || true
    fi
}
trap cleanup EXIT

section "arm64 Debian root ($ROOT)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$PACKAGES" ]; then
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" bookworm "$ROOT" "$MIRROR"
    echo "$PACKAGES" >"$STAMP"
else
    echo "cached"
fi
# The host's CA bundle and resolver (pip inside the root needs both here).
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
PYVER="$(chroot "$ROOT" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "arm64 CPython $PYVER: $(chroot "$ROOT" /usr/bin/python3 -c 'import sys, platform; print(platform.machine(), sys.version.split()[0])')"

section "cross-build weft-py for aarch64 (CPython $PYVER)"
# PYO3_PYTHON for weft-pystate's build script: the chroot's python3, with the
# include dir it prints (the first line) turned into a host path.
wrapper="$WEFT_CI_WORK/arm64-python3"
cat >"$wrapper" <<EOF
#!/bin/sh
chroot "$ROOT" /usr/bin/python3 "\$@" | sed "1s|^/|$ROOT/|"
EOF
chmod +x "$wrapper"
RUSTC="$RUSTC_AARCH64" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    PYO3_PYTHON="$wrapper" \
    PYO3_CROSS_LIB_DIR="$ROOT/usr/lib/python$PYVER" \
    PYO3_CROSS_PYTHON_VERSION="$PYVER" \
    CFLAGS_aarch64_unknown_linux_gnu="-isystem $ROOT/usr/include" \
    cargo build -p weft-py --target aarch64-unknown-linux-gnu --release
so="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/lib_weft.so"
file "$so" 2>/dev/null || ls -l "$so"

section "pytest on arm64 CPython $PYVER under qemu"
rm -rf "$ROOT/weft"
mkdir -p "$ROOT/weft"
cp -r python tests pyproject.toml "$ROOT/weft/"
cp "$so" "$ROOT/weft/python/weft/_weft.cpython-${PYVER/./}-aarch64-linux-gnu.so"
if [ ! -x "$ROOT/venv/bin/python" ]; then
    chroot "$ROOT" /usr/bin/python3 -m venv /venv
fi
# shellcheck disable=SC2086  # a list of requirements
chroot "$ROOT" /venv/bin/pip install -q $TEST_DEPS
[ "$#" -gt 0 ] || set -- tests
{
    echo '#!/bin/sh'
    echo 'cd /weft && PYTHONPATH=/weft/python exec /venv/bin/python -m pytest -q -p no:cacheprovider -rfE \'
    echo '  --deselect tests/greenlet/test_greenlet_leaks.py::test_thread_exit_with_suspended_greenlets_flat_rss_subprocess \'
    printf '  %q' "$@"
    echo
} >"$ROOT/weft/run-tests.sh"
unshare -m -- sh -c "mount -t proc proc '$ROOT/proc' && exec timeout $PYTEST_TIMEOUT chroot '$ROOT' sh /weft/run-tests.sh"
