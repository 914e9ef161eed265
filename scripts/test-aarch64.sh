#!/usr/bin/env bash
# Runs weft-stack's unit tests (pure Rust, no Python) for aarch64-unknown-linux-gnu
# on an x86-64 Linux host, under qemu user-mode emulation.
#
#   bash scripts/test-aarch64.sh
#   bash scripts/test-aarch64.sh --tools   # only install/check the tools; last
#                                          # line: RUSTC=<the rustc to use>
#
# What it exercises: the AArch64 stack switch (crates/weft-stack/src/arch/
# aarch64_aapcs.rs) running real coroutine switches, with the tests checking
# that x19-x28, d8-d15 and FPCR survive every switch, that stacks stay 16-byte
# aligned (debug build) and that a backtrace unwinds through the routine (CFI).
# Both a debug and a release build run. What it does not: build or test weft's
# Python extension for AArch64 (that needs an AArch64 CPython), or run on real
# AArch64 hardware (qemu checks neither timing nor every trap a CPU raises).
#
# Needs: qemu-aarch64, aarch64-linux-gnu-gcc (the linker), the arm64 C library
# (/lib/ld-linux-aarch64.so.1), and a rustc with an aarch64-unknown-linux-gnu
# std. The script never runs `rustup target add` (rustup's download server is
# not one of the registries CI may rely on); if rustup's toolchain already has
# the target it is used, else the std comes from Debian's packages: rustc-web + libstd-rust-web-dev:arm64 (bookworm), or rustc +
# libstd-rust-dev:arm64 (later releases), used through RUSTC=/usr/bin/rustc
# with rustup's cargo. As root with apt-get, whatever is missing is installed
# (multiarch arm64 is enabled for that); otherwise the script prints
# "SKIP: ..." and exits 0.
#
# qemu runs without -L: with -L /usr/aarch64-linux-gnu (the cross sysroot's
# older libc) thread creation hung under qemu 7.2 and 10.0 on the machines
# here, while the multiarch libc6:arm64 works.
#
# Knobs: WEFT_AARCH64_RUSTC (the rustc to use, e.g. /usr/bin/rustc; default:
# rustup's if it has the aarch64 std, else Debian's), WEFT_AARCH64_PROFILES (default "dev release"), WEFT_AARCH64_TIMEOUT
# (seconds per test binary run, default 300: a broken CFI makes the backtrace
# test loop in the unwinder instead of failing), CARGO_TARGET_DIR (default
# $WEFT_CI_WORK/target-aarch64).
set -euo pipefail
# shellcheck source=scripts/ci-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ci-lib.sh"
cd "$WEFT_REPO"

TARGET=aarch64-unknown-linux-gnu
PROFILES="${WEFT_AARCH64_PROFILES-dev release}"
RUN_TIMEOUT="${WEFT_AARCH64_TIMEOUT:-300}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEFT_CI_WORK/target-aarch64}"

skip() {
    echo "SKIP: aarch64 weft-stack tests: $*"
    exit 0
}

# A rustc whose sysroot has the aarch64 std: rustup's (if the target was ever
# added) or Debian's.
find_rustc() {
    local r sysroot
    for r in ${WEFT_AARCH64_RUSTC:-"$(command -v rustc || true)" /usr/bin/rustc}; do
        [ -n "$r" ] && [ -x "$r" ] || continue
        sysroot="$("$r" --print sysroot 2>/dev/null)" || continue
        if ls "$sysroot/lib/rustlib/$TARGET/lib/"libstd-*.rlib >/dev/null 2>&1; then
            echo "$r"
            return 0
        fi
    done
    return 1
}

have_tools() {
    command -v qemu-aarch64 >/dev/null &&
        command -v aarch64-linux-gnu-gcc >/dev/null &&
        [ -e /lib/ld-linux-aarch64.so.1 ] &&
        find_rustc >/dev/null
}

install_tools() {
    echo "installing the aarch64 cross tools from Debian's packages"
    dpkg --add-architecture arm64
    apt-get update -qq
    # Debian's Rust: bookworm has 1.63 as rustc and a current one as rustc-web;
    # the workspace needs 1.85+.
    local rust_pkgs="rustc libstd-rust-dev:arm64"
    if apt-cache show rustc-web >/dev/null 2>&1; then
        rust_pkgs="rustc-web libstd-rust-web-dev:arm64"
    fi
    # shellcheck disable=SC2086  # a list of package names
    apt-get install -y -qq --no-install-recommends \
        qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross libc6:arm64 $rust_pkgs >/dev/null
}

if ! have_tools; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
        install_tools || skip "installing the cross tools with apt-get failed"
        have_tools || skip "the cross tools are still incomplete after apt-get (qemu-aarch64, aarch64-linux-gnu-gcc, libc6:arm64, an aarch64 Rust std)"
    else
        skip "needs qemu-aarch64, aarch64-linux-gnu-gcc, libc6:arm64 and an aarch64 Rust std; run as root with apt-get to install them"
    fi
fi

RUSTC_AARCH64="$(find_rustc)"
sysroot="$("$RUSTC_AARCH64" --print sysroot)"
[ -e "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib" ] ||
    skip "$RUSTC_AARCH64 has an aarch64 std but no host std (build scripts and proc macros need one)"
echo "rustc:   $RUSTC_AARCH64 ($("$RUSTC_AARCH64" --version))"
echo "cargo:   $(cargo --version)"
echo "qemu:    $(qemu-aarch64 --version | head -n1)"
echo "linker:  $(aarch64-linux-gnu-gcc --version | head -n1)"
if [ "${1:-}" = --tools ]; then
    echo "RUSTC=$RUSTC_AARCH64"
    exit 0
fi

export RUSTC="$RUSTC_AARCH64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="timeout $RUN_TIMEOUT qemu-aarch64"

for profile in $PROFILES; do
    echo "---- cargo test -p weft-stack --target $TARGET --profile $profile (under qemu-aarch64)"
    # --lib: the unit tests; doctests are not run for a cross target.
    cargo test -p weft-stack --target "$TARGET" --profile "$profile" --lib
done
echo "aarch64 weft-stack tests: OK"
