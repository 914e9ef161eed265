#!/usr/bin/env bash
# Builds weft's manylinux wheels (CPython 3.11-3.15, x86-64 and AArch64) and
# its sdist into dist/, and audits every wheel.
#
#   bash scripts/build-wheels.sh                       # all ten wheels + the sdist
#   bash scripts/build-wheels.sh --arch x86_64 3.11    # one wheel
#   bash scripts/build-wheels.sh --no-sdist --out DIR 3.12 3.13
#
# Tag: manylinux2014 / manylinux_2_17 (glibc 2.17) on both architectures; why
# and what it covers: docs/wheels.md. How: maturin build --zig (zig, from the
# ziglang package on PyPI, links against glibc 2.17 symbol versions and is the
# C compiler for csrc/pystate.c through the cc crate, for both targets), each
# wheel against its target interpreter's own headers and sysconfig:
#   x86-64  3.11-3.13  pyenv's CPython on the host
#   x86-64  3.14-3.15  Debian sid's, in scripts/sid.sh's root (sid.sh --exec)
#   AArch64 3.11       Debian bookworm's arm64 CPython, multiarch on the host
#   AArch64 3.13-3.15  Debian sid's arm64 CPython, multiarch in the sid root
#   AArch64 3.12       no Debian release has it: pyenv's 3.12 headers (x86-64
#                      pyconfig.h, same layout on LP64 Linux), maturin's bundled
#                      aarch64 sysconfig; built, never run (docs/wheels.md)
# The arm64 interpreters run under qemu-user through binfmt_misc while
# building (weft-pystate's build script asks the target interpreter for its
# include dir and -D_Py_* flags). The AArch64 Rust std is Debian's (rustc-web /
# rustc with libstd-rust*-dev:arm64), used as RUSTC with rustup's cargo.
#
# Each wheel is audited: `auditwheel show` must find it consistent with
# manylinux_2_17_<arch> (no library outside the policy, no newer glibc symbol),
# its file name must carry cpXY-cpXY-manylinux2014_<arch>.manylinux_2_17_<arch>,
# and its extension must be an ELF for <arch> named _weft.cpython-XY-<arch>-linux-gnu.so
# that links libgcc_s.so.1 (one unwinder: see build_wheel).
#
# Needs root (apt-get for the multiarch packages, chroot, binfmt_misc) for
# anything but the host x86-64 wheels. Tools (pinned, from PyPI): maturin,
# ziglang, auditwheel, in $WEFT_CI_WORK/venv-wheel-tools.
# Tests of the built wheels: scripts/test-wheels.sh.
set -euo pipefail
# shellcheck source=scripts/ci-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ci-lib.sh"
# shellcheck source=scripts/wheels-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/wheels-lib.sh"
cd "$WEFT_REPO"

ARCHES=""
SDIST=1
OUT="$WEFT_REPO/dist"
IN_SID=0
VERSIONS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCHES="${ARCHES:+$ARCHES }$2"; shift 2 ;;
        --no-sdist) SDIST=0; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --in-sid) IN_SID=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) VERSIONS+=("$1"); shift ;;
    esac
done
[ -n "$ARCHES" ] || ARCHES="$WHEEL_ARCHES_DEFAULT"
[ ${#VERSIONS[@]} -gt 0 ] || read -r -a VERSIONS <<<"$WHEEL_VERSIONS_DEFAULT"
for a in $ARCHES; do
    case "$a" in x86_64|aarch64) ;; *) die "unknown arch $a (x86_64 or aarch64)" ;; esac
done
for v in "${VERSIONS[@]}"; do
    [[ " $WHEEL_VERSIONS_DEFAULT " == *" $v "* ]] || die "no wheel for CPython $v (weft supports $WHEEL_VERSIONS_DEFAULT)"
done

# Any "python3" the build might fall back to must not be the host's: every
# step names its interpreter. maturin must never download Rust (ci-lib.sh).
TIMINGS=()

# build_wheel ARCH V PYTHON [VAR=VALUE...]: maturin build into OUT, then audit.
build_wheel() {
    local arch="$1" v="$2" py="$3"; shift 3
    local tmp t0=$SECONDS whl
    tmp="$WEFT_CI_WORK/wheel-build-$arch-$v"
    rm -rf "$tmp"
    section "wheel: CPython $v $arch ($(where_built "$arch" "$v"); interpreter $py)"
    # The unwinder: zig replaces rustc's -lgcc_s with its own static LLVM
    # libunwind. glibc's pthread_exit (CPython ends daemon threads with it at
    # shutdown) force-unwinds with libgcc_s's unwinder, and Rust's personality
    # routine then handed libgcc's context to the other unwinder: a segfault
    # (tests/greenlet/test_greenlet_faults.py, two shutdown tests). Linking the
    # target's libgcc_s.so.1 by path keeps one unwinder, libgcc_s, as in any
    # gcc-linked extension (it is in the manylinux policy; GCC_3.0-4.2.0 symbols).
    local gcc_s upper
    gcc_s="$(libgcc_s_path "$arch")"
    upper="$(triple "$arch" | tr 'a-z-' 'A-Z_')"
    # PATH: maturin finds zig as `python3 -m ziglang` (the tools venv's python3).
    env PATH="$TOOLS/bin:$PATH" "CARGO_TARGET_${upper}_RUSTFLAGS=-C link-arg=$gcc_s" "$@" \
        CARGO_TARGET_DIR="$WEFT_CI_WORK/target-wheel-$arch-$v" \
        "$TOOLS/bin/maturin" build --release --zig --compatibility "$WHEEL_COMPAT" --auditwheel check \
        --target "$(triple "$arch")" -i "$py" -o "$tmp"
    whl="$(find "$tmp" -name '*.whl')"
    [ "$(echo "$whl" | wc -l)" = 1 ] && [ -n "$whl" ] || die "expected one wheel in $tmp, found: $whl"
    audit_wheel "$whl" "$arch" "$v"
    mkdir -p "$OUT"
    rm -f "$OUT"/$(wheel_glob "$v" "$arch")
    mv "$whl" "$OUT/"
    TIMINGS+=("$((SECONDS - t0))s  $(basename "$whl")")
}

# libgcc_s_path ARCH: the target's libgcc_s.so.1 (multiarch for arm64).
libgcc_s_path() {
    local d
    for d in /usr/lib/"$1"-linux-gnu /lib/"$1"-linux-gnu; do
        if [ -e "$d/libgcc_s.so.1" ]; then echo "$d/libgcc_s.so.1"; return 0; fi
    done
    if [ "$1" = aarch64 ]; then
        ensure_arm64_arch
        apt-get install -y -qq --no-install-recommends libgcc-s1:arm64 >/dev/null || die "apt-get install libgcc-s1:arm64 failed"
        libgcc_s_path "$1"; return
    fi
    die "no libgcc_s.so.1 for $1"
}

# audit_wheel WHEEL ARCH V
audit_wheel() {
    local whl="$1" arch="$2" v="$3" name show so x
    name="$(basename "$whl")"
    # shellcheck disable=SC2053  # a glob on purpose
    [[ "$name" == $(wheel_glob "$v" "$arch") ]] || die "audit: $name does not match $(wheel_glob "$v" "$arch")"
    show="$("$TOOLS/bin/auditwheel" show "$whl" 2>&1)" || die "audit: auditwheel show failed on $name: $show"
    echo "$show" | tr '\n' ' ' | grep -q "consistent with the following platform tag: \"${WHEEL_GLIBC_TAG}_$arch\"" ||
        die "audit: $name is not manylinux_2_17_$arch compliant: $show"
    # ("The wheel requires no external shared libraries! :)" is the good case.)
    if echo "$show" | tr '\n' ' ' | grep -qi "following external shared libraries"; then
        die "audit: $name needs libraries outside the manylinux policy: $show"
    fi
    so="weft/_weft.cpython-${v/./}-$arch-linux-gnu.so"
    x="$(mktemp -d)"
    (cd "$x" && python_unzip "$whl" "$so")
    [ -f "$x/$so" ] || die "audit: $name has no $so"
    local machine
    machine="$(od -An -tu2 -j18 -N2 "$x/$so" | tr -d ' ')"   # ELF e_machine: 62 x86-64, 183 AArch64
    case "$arch:$machine" in x86_64:62|aarch64:183) ;; *) die "audit: $so in $name is e_machine $machine, not $arch" ;; esac
    # One unwinder (see build_wheel): libgcc_s needed, _Unwind_* not defined inside.
    "$TOOLS/bin/python" - "$x/$so" <<'PY' || die "audit: $so in $name does not use libgcc_s's unwinder"
import sys
from elftools.elf.elffile import ELFFile
with open(sys.argv[1], "rb") as f:
    elf = ELFFile(f)
    needed = [t.needed for t in elf.get_section_by_name(".dynamic").iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    defined = [s.name for s in elf.get_section_by_name(".dynsym").iter_symbols()
               if s.name.startswith("_Unwind_") and s["st_shndx"] != "SHN_UNDEF"]
if "libgcc_s.so.1" not in needed or defined:
    print(f"NEEDED {needed}; _Unwind_ symbols defined inside: {defined}")
    sys.exit(1)
PY
    rm -rf "$x"
    echo "audit: $name OK (auditwheel: consistent with manylinux_2_17_$arch, only libraries of the policy; $so is an $arch ELF using libgcc_s.so.1)"
}

# python_unzip WHEEL MEMBER: extract one member into the current directory.
python_unzip() {
    "$TOOLS/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2])' "$1" "$2"
}

# ---------------------------------------------------------------------------
# Inside the sid root (called by the host run through scripts/sid.sh --exec):
# ARCHES/VERSIONS are what to build here; wheels go to OUT (a path in the root).
if [ "$IN_SID" = 1 ]; then
    TOOLS="$WEFT_CI_WORK/venv-wheel-tools"
    ensure_wheel_tools /usr/bin/python3.14 "$TOOLS"
    for arch in $ARCHES; do
        for v in "${VERSIONS[@]}"; do
            if [ "$arch" = x86_64 ]; then
                build_wheel x86_64 "$v" "/usr/bin/python$v" \
                    CFLAGS_x86_64_unknown_linux_gnu="-idirafter /usr/include"
            else
                rustc_a64="$(ensure_aarch64_rustc)"
                py="$(ensure_arm64_python "$v" "$WEFT_CI_WORK/arm64-python")"
                build_wheel aarch64 "$v" "$py" RUSTC="$rustc_a64" \
                    PYO3_CROSS_LIB_DIR="/usr/lib/python$v" \
                    CFLAGS_aarch64_unknown_linux_gnu="-idirafter /usr/include"
            fi
        done
    done
    printf '%s\n' "${TIMINGS[@]}" >"$OUT/.timings"
    exit 0
fi

# ---------------------------------------------------------------------------
# On the host.
T_START=$SECONDS
section "wheel tools"
TOOLS="$WEFT_CI_WORK/venv-wheel-tools"
tools_py="$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.11.*/bin/python3.11 2>/dev/null | sort -V | tail -n1 || true)"
[ -x "$tools_py" ] || tools_py="$(command -v python3)"
ensure_wheel_tools "$tools_py" "$TOOLS"
"$TOOLS/bin/maturin" --version
"$TOOLS/bin/auditwheel" --version | head -n1
echo "zig $("$TOOLS/bin/python" -m ziglang version)"

pyenv_python() {   # pyenv_python 3.12 -> newest pyenv CPython 3.12.x
    local root found
    root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    found="$(ls -d "$root"/versions/"$1".*/bin/python"$1" 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$found" ] && [ -x "$found" ] || die "CPython $1 not found under $root/versions"
    echo "$found"
}

SID_JOBS=()   # "arch:version" built in the sid root
need_binfmt=0
for arch in $ARCHES; do
    for v in "${VERSIONS[@]}"; do
        if [ "$(where_built "$arch" "$v")" = sid ]; then SID_JOBS+=("$arch:$v"); fi
        if [ "$arch" = aarch64 ] && [ "$v" != 3.12 ]; then need_binfmt=1; fi
    done
done
if [ "$need_binfmt" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "AArch64 wheels need root (multiarch packages, binfmt_misc)"
    ensure_binfmt_aarch64
    trap unregister_binfmt_aarch64 EXIT
fi

for arch in $ARCHES; do
    for v in "${VERSIONS[@]}"; do
        [ "$(where_built "$arch" "$v")" = host ] || continue
        if [ "$arch" = x86_64 ]; then
            build_wheel x86_64 "$v" "$(pyenv_python "$v")"
        elif [ "$v" = 3.12 ]; then
            # No arm64 CPython 3.12 to ask: maturin's bundled sysconfig for
            # aarch64 3.12 (PYO3_CROSS_PYTHON_VERSION, no lib dir), pyenv's
            # 3.12 as the interpreter weft-pystate's build script reads headers from.
            rustc_a64="$(ensure_aarch64_rustc)"
            py312="$(pyenv_python 3.12)"
            build_wheel aarch64 3.12 python3.12 RUSTC="$rustc_a64" PYO3_CROSS_PYTHON_VERSION=3.12 \
                PYO3_PYTHON="$py312" PATH="$TOOLS/bin:$(dirname "$py312"):$PATH"
        else
            rustc_a64="$(ensure_aarch64_rustc)"
            py="$(ensure_arm64_python "$v" "$WEFT_CI_WORK/arm64-python")"
            build_wheel aarch64 "$v" "$py" RUSTC="$rustc_a64" \
                PYO3_CROSS_LIB_DIR="/usr/lib/python$v" \
                CFLAGS_aarch64_unknown_linux_gnu="-idirafter /usr/include"
        fi
    done
done

if [ ${#SID_JOBS[@]} -gt 0 ]; then
    section "wheels built in the Debian sid root: ${SID_JOBS[*]}"
    bash scripts/sid.sh --prepare
    sid_out_in=/var/cache/weft/wheels-out          # inside the root
    sid_out="$WEFT_CI_WORK/sid-root$sid_out_in"    # the same dir on the host
    rm -rf "$sid_out"
    mkdir -p "$sid_out"
    for job in "${SID_JOBS[@]}"; do
        arch="${job%%:*}" v="${job#*:}"
        bash scripts/sid.sh --exec bash /src/scripts/build-wheels.sh --in-sid --no-sdist \
            --out "$sid_out_in" --arch "$arch" "$v"
        while read -r line; do TIMINGS+=("$line (in sid)"); done <"$sid_out/.timings"
        rm -f "$sid_out/.timings"
    done
    mkdir -p "$OUT"
    for whl in "$sid_out"/*.whl; do
        rm -f "$OUT/$(basename "$whl")"
        mv "$whl" "$OUT/"
    done
fi

if [ "$SDIST" = 1 ]; then
    section "sdist"
    t0=$SECONDS
    tmp="$WEFT_CI_WORK/sdist-build"
    rm -rf "$tmp"
    "$TOOLS/bin/maturin" sdist -o "$tmp"
    sd="$(ls "$tmp"/weft-*.tar.gz)"
    # What a source build needs: the lock file, every crate, the C file, the package.
    listing="$(tar tzf "$sd")"
    for f in Cargo.lock Cargo.toml crates/weft-pystate/csrc/pystate.c crates/weft-pystate/build.rs \
             crates/weft-py/Cargo.toml python/weft/__init__.py pyproject.toml; do
        echo "$listing" | grep -q "^weft-[^/]*/$f\$" || die "sdist $(basename "$sd") lacks $f"
    done
    mkdir -p "$OUT"
    rm -f "$OUT/$(basename "$sd")"
    mv "$sd" "$OUT/"
    TIMINGS+=("$((SECONDS - t0))s  $(basename "$sd")")
fi

section "built into $OUT"
printf '  %s\n' "${TIMINGS[@]}"
echo "  total $((SECONDS - T_START))s"
