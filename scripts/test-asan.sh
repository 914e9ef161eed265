#!/usr/bin/env bash
# weft's pytest suite (greenlet, gateways, tasklets, wire) under AddressSanitizer.
#
#   bash scripts/test-asan.sh [PYTHON]      # default: python3.11 on PATH
#
# What it does (docs/sanitizers.md says why each step is so):
#   1. builds weft with both its Rust code (rustc -Zsanitizer=address, through
#      RUSTC_BOOTSTRAP=1 on the stable toolchain) and csrc/pystate.c (gcc
#      -fsanitize=address) instrumented for heap and global accesses; stack
#      instrumentation off in both (weft copies stack bytes in and out, and
#      ASan's shadow of the stack cannot follow them);
#   2. installs that wheel into its own venv and checks that the extension it
#      loads is the instrumented one (it references __asan_report_*);
#   3. checks that the sanitizer is live: a planted double free in a child run
#      under the same settings must write a report;
#   4. runs pytest on tests/ (greenlet, execnet, stackless and the rest) with
#      gcc's ASan runtime LD_PRELOADed into CPython (and so into every child:
#      gateway workers, subprocess tests) and PYTHONMALLOC=malloc, so that all
#      of CPython's allocations go through ASan's allocator;
#   5. fails on any test failure and on any ASan report: every process writes
#      its reports to a log dir (log_path), so a report from a child whose
#      output a test swallows still fails the run.
#
# Not run here, each for a stated reason (and run in the normal pytest stages):
# the RSS leak tests (*flat_rss*: ASan's quarantine and shadow memory grow RSS
# by design) and test_server_survives_thread_exhaustion (it sets a 1 GiB
# RLIMIT_AS, and ASan reserves terabytes of virtual shadow memory at start).
#
# Knobs: WEFT_ASAN_RUST=0 instruments only pystate.c (no RUSTC_BOOTSTRAP);
# WEFT_ASAN_TESTS (what pytest runs, default "tests"; e.g. "tests/greenlet");
# WEFT_ASAN_PYTEST_ARGS (extra pytest arguments, e.g. "-x -k switch");
# WEFT_RING_TASKLETS (default 10000 here); WEFT_CI_WORK (venv, target dir,
# wheel and logs go under $WEFT_CI_WORK/asan).
set -euo pipefail
# shellcheck source=scripts/ci-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ci-lib.sh"
cd "$WEFT_REPO"

py="${1:-python3.11}"
work="$WEFT_CI_WORK/asan"
venv="$work/venv"
dist="$work/dist"
logs="$work/logs"
mkdir -p "$work"

# ---- the runtime: gcc's libasan (the compiler of pystate.c) -------------------
asan_rt() { local p; p="$(gcc -print-file-name=libasan.so)"; [ -f "$p" ] && echo "$p"; }
if ! asan_rt >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing gcc's ASan runtime (libasan of gcc $(gcc -dumpversion))"
        { apt-get update -qq && apt-get install -y -qq "libgcc-$(gcc -dumpversion)-dev"; } >/dev/null
    fi
fi
ASAN_RT="$(asan_rt)" || die "gcc's libasan.so not found (gcc -print-file-name=libasan.so); install libgcc-N-dev for your gcc"
echo "ASan runtime: $ASAN_RT"

# ---- 1. build ---------------------------------------------------------------
"$py" -m venv --clear "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q maturin
# Heap and global checks only: no stack redzones (see above), frame pointers
# for readable reports.
cflags="-fsanitize=address --param=asan-stack=0 -fno-omit-frame-pointer -g"
rustflags=""
build_env=()
if [ "${WEFT_ASAN_RUST:-1}" != 0 ]; then
    # -Zsanitizer is unstable; RUSTC_BOOTSTRAP=1 lets the stable rustc take it.
    # --target below keeps RUSTFLAGS off build scripts and proc macros (which
    # rustc itself loads, uninstrumented).
    rustflags="-Zsanitizer=address -Cllvm-args=-asan-stack=0 -Cforce-frame-pointers=yes"
    build_env+=(RUSTC_BOOTSTRAP=1)
fi
echo "CFLAGS=$cflags"
echo "RUSTFLAGS=${rustflags:-(none: Rust not instrumented, WEFT_ASAN_RUST=0)}"
rm -rf "$dist"
env "${build_env[@]}" CC=gcc CFLAGS="$cflags" RUSTFLAGS="$rustflags" \
    CARGO_TARGET_DIR="$work/target" CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    "$venv/bin/maturin" build --release -q --target x86_64-unknown-linux-gnu \
    -i "$venv/bin/python" -o "$dist"
whl="$(ls "$dist"/weft-*.whl)"
"$venv/bin/python" -m pip install -q "${whl}[test]" pytest-timeout objgraph

# ---- 2. the extension loaded is the instrumented one ---------------------------
export ASAN_OPTIONS="detect_leaks=0"
so="$(cd "$work" && LD_PRELOAD="$ASAN_RT" PYTHONMALLOC=malloc "$venv/bin/python" -c 'import weft._weft as w; print(w.__file__)')"
echo "extension: $so"
case "$so" in "$venv"/*) ;; *) die "the ASan venv imports weft from $so, not from its own site-packages" ;; esac
n_checks="$(nm -D --undefined-only "$so" | grep -c ' __asan_report_' || true)"
[ "$n_checks" -gt 0 ] || die "$so references no __asan_report_* function: it is not instrumented"
echo "instrumented: $so references $n_checks __asan_report_* functions"
if [ "${WEFT_ASAN_RUST:-1}" != 0 ]; then
    # LLVM (rustc) registers its globals with __asan_register_elf_globals, gcc
    # with __asan_register_globals: the first one means the Rust code is in.
    # (grep -c reads all of nm's output: grep -q would stop early, and nm's
    # SIGPIPE would fail the pipeline under pipefail now and then)
    [ "$(nm -D --undefined-only "$so" | grep -c ' __asan_register_elf_globals$' || true)" -gt 0 ] \
        || die "$so has no LLVM-instrumented code: the Rust part was built without -Zsanitizer=address"
    echo "instrumented: the Rust code too (__asan_register_elf_globals)"
fi

# ---- 3. the sanitizer is live: a planted double free is reported -------------
rm -rf "$logs" && mkdir -p "$logs/canary" "$logs/run"
rc=0
LD_PRELOAD="$ASAN_RT" PYTHONMALLOC=malloc ASAN_OPTIONS="detect_leaks=0:log_path=$logs/canary/asan" \
    "$venv/bin/python" -c '
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
p = libc.malloc(32)
libc.free(p)
libc.free(p)
' || rc=$?
if [ "$rc" -eq 0 ] || ! grep -q 'attempting double-free' "$logs"/canary/asan.* 2>/dev/null; then
    die "the planted double free was not reported (exit $rc): ASan is not live, a clean run would mean nothing"
fi
echo "canary: the planted double free was reported (exit $rc)"

# ---- 4. the suites ------------------------------------------------------------
read -r -a tests <<<"${WEFT_ASAN_TESTS:-tests}"
read -r -a extra <<<"${WEFT_ASAN_PYTEST_ARGS:-}"
rc=0
# (pytest's exit 5, no tests collected, fails the script like any other.)
WEFT_RING_TASKLETS="${WEFT_RING_TASKLETS:-10000}" \
LD_PRELOAD="$ASAN_RT" PYTHONMALLOC=malloc ASAN_OPTIONS="detect_leaks=0:log_path=$logs/run/asan" \
    "$venv/bin/python" -m pytest -q "${tests[@]}" -p no:cacheprovider -rs \
    -k 'not flat_rss and not test_server_survives_thread_exhaustion' "${extra[@]}" || rc=$?

# ---- 5. zero reports ------------------------------------------------------------
reports=("$logs"/run/asan.*)
if [ -e "${reports[0]}" ]; then
    echo "ERROR: ${#reports[@]} process(es) wrote AddressSanitizer reports:" >&2
    for f in "${reports[@]}"; do echo "---- $f" >&2; head -n 60 "$f" >&2; done
    exit 1
fi
echo "AddressSanitizer: 0 reports (log dir $logs/run empty)"
exit "$rc"
