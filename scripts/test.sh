#!/usr/bin/env bash
# weft's full test run: what CI runs (via .ci/run) and what README documents.
#
#   bash scripts/test.sh
#
# Stages:
#   1. cargo test --workspace, cargo clippy (undocumented unsafe denied), a
#      short fuzz of the Rust wire decoder, and weft-stack's unit tests for
#      aarch64 under qemu (scripts/test-aarch64.sh); the pytest suite under
#      AddressSanitizer on 3.11 (scripts/test-asan.sh, docs/sanitizers.md)
#   2. for CPython 3.11, 3.12, 3.13 from pyenv: venv, install weft, pytest
#      (+ greenlet's own suite on each; execnet's, xdist's and gevent's after 3.11,
#      and on 3.11 the differential fuzz of both wire decoders, 1,000,000 runs,
#      and mypy's stubtest of weft._weft's stubs).
#      3.11 and 3.12 install the manylinux wheels that scripts/build-wheels.sh
#      builds (and audits) here, and run their tests with no cargo on PATH;
#      3.13 builds from the sdist made beside them (pip install SDIST[test]).
#      Once both wheels are there: the wrong-interpreter checks
#      (scripts/test-wheels.sh --wrong-version).
#   3. for CPython 3.14, 3.15 from Debian sid, in a chroot: scripts/sid.sh
#      (pytest, pytest with the JIT on, and greenlet's own suite)
#
# Knobs (environment variables), all optional:
#   WEFT_HOST_PYTHONS   pyenv versions to test        (default "3.11 3.12 3.13")
#   WEFT_SID_PYTHONS    Debian sid versions to test   (default "3.14 3.15"; "" skips)
#   WEFT_CONFORMANCE    conformance suites to run     (default "greenlet execnet xdist gevent")
#   WEFT_SID_XFAIL, WEFT_CONFORMANCE_XFAIL: see "allowed to fail" below
#   WEFT_CARGO_TEST_ARGS  arguments to cargo test     (default "--workspace")
#   WEFT_CI_WORK        work dir for venvs/targets/sid root (default .ci-work)
#   WEFT_AARCH64        "0" skips the aarch64 (qemu) stage  (default "1")
#   WEFT_ASAN           "0" skips the AddressSanitizer stage (default "1");
#                       WEFT_ASAN_RUST, WEFT_ASAN_TESTS: see scripts/test-asan.sh
#   WEFT_WHEEL_PYTHONS  host versions installed from a built wheel (default "3.11 3.12";
#                       the others build from source: the sdist, or "." without one)
set -euo pipefail
# shellcheck source=scripts/ci-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ci-lib.sh"
# shellcheck source=scripts/wheels-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/wheels-lib.sh"
cd "$WEFT_REPO"

HOST_PYTHONS="${WEFT_HOST_PYTHONS-3.11 3.12 3.13}"
WHEEL_PYTHONS="${WEFT_WHEEL_PYTHONS-3.11 3.12}"
CI_DIST="$WEFT_CI_WORK/dist-ci"
SID_PYTHONS="${WEFT_SID_PYTHONS-3.14 3.15}"
# Conformance suites: `python -m weft.conformance SUITE` for each, after the
# pytest run (greenlet on every host version, the others on 3.11 only). Each runner gates itself: it exits 1 only on a failure not
# in its list of known (or known-flaky) failures.
CONFORMANCE_SUITES="${WEFT_CONFORMANCE-greenlet execnet xdist gevent}"
CONFORMANCE_PYTHON=3.11
# What each suite's own tests import (the peer's [test] extra), installed
# into the venv before that suite runs.
# (xdist's runner installs pytest-xdist and filelock into a private dir itself.)
declare -A CONFORMANCE_DEPS=(
    [greenlet]="objgraph psutil setuptools"
    # eventlet and gevent: execnet's suite runs their exec-model variants
    # (on weft.greenlet: the runner's alias answers `import greenlet`);
    # about 45 s more than without them on the 2-core CI machine
    [execnet]="pytest-timeout eventlet gevent"
    [xdist]="pytest-timeout filelock"
    # gevent's runner installs gevent's wheel, zope.event and zope.interface
    # into a private dir itself; test___monitor wants psutil.
    [gevent]="psutil"
)
# Allowed to fail: these stages run and their result is reported, but a
# failure does not fail the whole run. For work in progress only: CPython
# versions weft does not support yet, conformance suites not yet green.
# Remove an entry once it passes (the run says so when it does).
SID_XFAIL="${WEFT_SID_XFAIL-}"
CONFORMANCE_XFAIL="${WEFT_CONFORMANCE_XFAIL-}"
# cargo test --workspace includes weft-py's tests, which embed the
# interpreter: the workspace's pyo3 has no extension-module feature (maturin
# turns it on for the extension, pyproject.toml [tool.maturin] features), so
# the test binary links the libpython of PYO3_PYTHON (the first host Python).
read -r -a CARGO_TEST_ARGS <<<"${WEFT_CARGO_TEST_ARGS:---workspace}"

mkdir -p "$WEFT_CI_WORK"

# ---- stage timing -----------------------------------------------------------
STAGE_NAMES=()
STAGE_SECS=()
STAGE_T0=0
CURRENT_STAGE=""
stage() {   # stage NAME: end the running stage (if any), start NAME
    stage_end
    CURRENT_STAGE="$1"
    STAGE_T0=$SECONDS
    section "$1"
}
stage_end() {
    if [ -n "$CURRENT_STAGE" ]; then
        STAGE_NAMES+=("$CURRENT_STAGE")
        STAGE_SECS+=($((SECONDS - STAGE_T0)))
        CURRENT_STAGE=""
    fi
}
ALLOWED_FAILURES=()
in_list() { [[ " $1 " == *" $2 "* ]]; }
# allowed_to_fail XFAIL_LIST ITEM CMD...: run CMD; a failure fails the run
# unless ITEM is in XFAIL_LIST, in which case it is only recorded.
allowed_to_fail() {
    local list="$1" item="$2" rc=0; shift 2
    "$@" || rc=$?
    if [ "$rc" -ne 0 ] && in_list "$list" "$item"; then
        echo "NOTE: failed (exit $rc) but '$item' is allowed to fail for now"
        ALLOWED_FAILURES+=("$CURRENT_STAGE")
        CURRENT_STAGE="$CURRENT_STAGE (FAILED, allowed)"
    elif [ "$rc" -ne 0 ]; then
        return "$rc"
    elif in_list "$list" "$item"; then
        echo "NOTE: '$item' passes now: remove it from its allowed-to-fail list in scripts/test.sh"
    fi
}
summary() {
    local rc=$?
    if [ -n "$CURRENT_STAGE" ] && [ "$rc" -ne 0 ]; then
        CURRENT_STAGE="$CURRENT_STAGE (FAILED)"
    fi
    stage_end
    section "timings"
    local i
    for i in "${!STAGE_NAMES[@]}"; do
        printf '  %5ds  %s\n' "${STAGE_SECS[$i]}" "${STAGE_NAMES[$i]}"
    done
    printf '  %5ds  total\n' "$SECONDS"
    if [ ${#ALLOWED_FAILURES[@]} -gt 0 ]; then
        echo "allowed failures (not counted against the run):"
        printf '  - %s\n' "${ALLOWED_FAILURES[@]}"
    fi
    if [ "$rc" -eq 0 ]; then echo "scripts/test.sh: OK"; else echo "scripts/test.sh: FAILED (exit $rc)"; fi
}
trap summary EXIT

# ---- helpers ----------------------------------------------------------------
pyenv_root() {
    if command -v pyenv >/dev/null 2>&1; then pyenv root
    elif [ -x "$HOME/.pyenv/bin/pyenv" ]; then "$HOME/.pyenv/bin/pyenv" root
    else echo "${PYENV_ROOT:-$HOME/.pyenv}"
    fi
}

# find_pyenv_python 3.12 -> newest $(pyenv root)/versions/3.12.*/bin/python3.12
find_pyenv_python() {
    local v="$1" root found
    root="$(pyenv_root)"
    found="$(ls -d "$root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$found" ] && [ -x "$found" ] || die "CPython $v not found under $root/versions (expected $root/versions/$v.*/bin/python$v)"
    echo "$found"
}

# execnet's suite runs its ssh variants against a throwaway sshd on 127.0.0.1
# (weft/_tooling/sshd.py) when openssh-server is installed: install it if
# missing and we can (root with apt-get); otherwise those tests are skipped.
ensure_sshd() {
    if [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null && command -v ssh >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing openssh-server (for execnet's ssh tests)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; } >/dev/null \
            || echo "NOTE: could not install openssh-server; execnet's ssh tests will be skipped"
    else
        echo "NOTE: openssh-server is not installed; execnet's ssh tests will be skipped"
    fi
}

# ---- 0. environment ---------------------------------------------------------
stage "environment"
echo "repo:      $WEFT_REPO ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "work dir:  $WEFT_CI_WORK"
echo "cargo:     $(cargo --version)"
echo "rustc:     $(rustc --version)"
echo "cores:     $(nproc)"
echo "pythons:   host [$HOST_PYTHONS]  sid [$SID_PYTHONS]"
# Resolve all interpreters up front so a missing one fails in seconds.
declare -A HOST_PY
for v in $HOST_PYTHONS; do
    HOST_PY[$v]="$(find_pyenv_python "$v")"
    echo "python$v: ${HOST_PY[$v]}"
done

# ---- 1. cargo test ----------------------------------------------------------
stage "cargo test ${CARGO_TEST_ARGS[*]}"
# Build against the first host Python (pyo3 needs one to configure itself).
first_py=python3
for v in $HOST_PYTHONS; do first_py="${HOST_PY[$v]}"; break; done
PYO3_PYTHON="$first_py" CARGO_TARGET_DIR="$WEFT_CI_WORK/target-cargo-test" \
    cargo test "${CARGO_TEST_ARGS[@]}"

# ---- 1 (loom). the hand-rolled concurrency protocols under loom ----------------
# Every interleaving of the read role, the deferred wake-ups and the
# direct-waiter flag (weft-transport) and of the greenlet kill queue against a
# thread's exit (weft-killq): a few seconds once built (about 1 min to build).
stage "loom models (RUSTFLAGS=--cfg loom cargo test -p weft-transport -p weft-killq --release loom)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$WEFT_CI_WORK/target-loom" \
    cargo test -p weft-transport -p weft-killq --release loom

# ---- 1a. clippy: every unsafe block documented ----------------------------------
# Every target, tests included. Only undocumented_unsafe_blocks is denied
# (other lints stay warnings). Needs rustup's clippy component: installed here
# when rustup is there and the component is missing; otherwise SKIP.
stage "cargo clippy --workspace --all-targets (-D clippy::undocumented_unsafe_blocks)"
if ! cargo clippy --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add clippy || true
fi
if cargo clippy --version >/dev/null 2>&1; then
    PYO3_PYTHON="$first_py" CARGO_TARGET_DIR="$WEFT_CI_WORK/target-cargo-test" \
        cargo clippy --workspace --all-targets -- -D clippy::undocumented_unsafe_blocks
else
    echo "SKIP: cargo clippy is not installed and rustup could not add it (no rustup, or no network)"
fi

# ---- 1b. fuzz the wire decoder briefly ----------------------------------------
# libFuzzer through cargo-fuzz where a nightly toolchain and cargo-fuzz are
# installed, else the stable mutation fuzzer (a cargo test): see .ci/fuzz-wire.sh.
stage "fuzz the wire decoder (.ci/fuzz-wire.sh)"
PYO3_PYTHON="$first_py" CARGO_TARGET_DIR="$WEFT_CI_WORK/target-cargo-test" \
    FUZZ_SECONDS="${WEFT_FUZZ_SECONDS:-30}" bash .ci/fuzz-wire.sh

# ---- 1c. weft-stack for aarch64 under qemu-user ------------------------------
# The AArch64 switch, executed: installs qemu-user, the cross linker and
# Debian's aarch64 Rust std when run as root (about 1.5 min on a new machine,
# under 40 s once installed); prints "SKIP: ..." and goes on where it cannot.
if [ "${WEFT_AARCH64:-1}" != 0 ]; then
    stage "weft-stack for aarch64 under qemu (scripts/test-aarch64.sh)"
    CARGO_TARGET_DIR="$WEFT_CI_WORK/target-aarch64" bash scripts/test-aarch64.sh
fi

# ---- 1d. AddressSanitizer ------------------------------------------------------
# The pytest suite (greenlet, gateways, tasklets) once, on an ASan build of weft
# (Rust and pystate.c instrumented) with gcc's runtime preloaded into CPython;
# fails on a failing test or on any ASan report from any process (about 5 min).
if [ "${WEFT_ASAN:-1}" != 0 ]; then
    asan_py="${HOST_PY[$CONFORMANCE_PYTHON]:-$first_py}"
    stage "pytest under AddressSanitizer ($asan_py; scripts/test-asan.sh)"
    ensure_sshd   # tests/execnet's ssh= gateways run under ASan too
    bash scripts/test-asan.sh "$asan_py"
fi

# ---- 2a. the manylinux wheels (and sdist) for the host versions ---------------
# The wheels the 3.11/3.12 stages install: built and audited by the documented
# command, the same build a release makes (x86-64 only here; AArch64 and the
# sid versions on demand: docs/wheels.md).
wheel_versions=()
for v in $WHEEL_PYTHONS; do
    if in_list "$HOST_PYTHONS" "$v"; then wheel_versions+=("$v"); fi
done
if [ ${#wheel_versions[@]} -gt 0 ]; then
    stage "manylinux wheels ${wheel_versions[*]} x86-64 + sdist (scripts/build-wheels.sh)"
    rm -rf "$CI_DIST"
    bash scripts/build-wheels.sh --arch x86_64 --out "$CI_DIST" "${wheel_versions[@]}"
fi
NO_CARGO_PATH="$(path_without_cargo)"

# ---- 2. host CPythons from pyenv --------------------------------------------
for v in $HOST_PYTHONS; do
    py="${HOST_PY[$v]}"
    venv="$WEFT_CI_WORK/venv-$v"
    sdist="$(ls "$CI_DIST"/weft-*.tar.gz 2>/dev/null | head -n1 || true)"

    if in_list "${wheel_versions[*]}" "$v"; then
        whl="$(ls "$CI_DIST"/$(wheel_glob "$v" x86_64))"
        stage "CPython $v: venv + pip install $(basename "$whl")[test] (no cargo on PATH)"
        "$py" -m venv --clear "$venv"
        PATH="$NO_CARGO_PATH" "$venv/bin/python" -m pip install -q --upgrade pip
        PATH="$NO_CARGO_PATH" "$venv/bin/python" -m pip install --only-binary weft "${whl}[test]"
        # pytest and the peers' suites below run without cargo reachable too.
        stage_path="$NO_CARGO_PATH"
    else
        src="${sdist:-.}"
        stage "CPython $v: venv + pip install $(basename "$src")[test] (a source build)"
        "$py" -m venv --clear "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        # One target dir per Python so reruns are incremental (pyo3 rebuilds
        # whenever the configured interpreter changes).
        CARGO_TARGET_DIR="$WEFT_CI_WORK/target-py$v" \
            "$venv/bin/python" -m pip install "${src}[test]"
        stage_path="$PATH"
    fi
    PATH="$stage_path" "$venv/bin/python" -c 'import sys, weft, weft._weft; print("weft", weft.__version__, "on", sys.version, "from", weft._weft.__file__)'

    stage "CPython $v: pytest"
    # The million-tasklet ring runs at full size once (on $CONFORMANCE_PYTHON),
    # at a tenth elsewhere: it takes about 8 GiB and a minute.
    if [ "$v" = "$CONFORMANCE_PYTHON" ]; then ring=1000000; else ring=100000; fi
    PATH="$stage_path" WEFT_RING_TASKLETS="${WEFT_RING_TASKLETS:-$ring}" run_pytest "$venv/bin/python"

    if [ "$v" = "$CONFORMANCE_PYTHON" ]; then
        # both wire decoders on the same mutants: they must agree (~30 s)
        stage "CPython $v: differential fuzz of the wire decoders (scripts/fuzz_wire_diff.py)"
        WEFT_WIRE_DIFF_ITERS="${WEFT_WIRE_DIFF_ITERS:-1000000}" \
            "$venv/bin/python" scripts/fuzz_wire_diff.py
        # frames after the handshake: the dispatch ends with a cause, never
        # crashes or hangs (~15 s)
        stage "CPython $v: fuzz of the gateway frame dispatch (scripts/fuzz_dispatch.py)"
        "$venv/bin/python" scripts/fuzz_dispatch.py
    fi

    if [ "$v" = "$CONFORMANCE_PYTHON" ]; then
        # The compiled module's stubs (python/weft/_weft/*.pyi) against the
        # module itself: mypy's stubtest, once (about 30 s with the install).
        # Run from outside the repo so that the installed weft is the one
        # checked; MYPYPATH points mypy at the stubs (weft ships no py.typed).
        stage "CPython $v: stubtest weft._weft"
        "$venv/bin/python" -m pip install -q mypy
        (cd "$WEFT_CI_WORK" && MYPYPATH="$WEFT_REPO/python" "$venv/bin/python" -m mypy.stubtest weft._weft \
            --allowlist "$WEFT_REPO/scripts/stubtest-allowlist.txt")
    fi

    if [ -n "$CONFORMANCE_SUITES" ]; then
        if [ -f python/weft/conformance.py ]; then
            for suite in $CONFORMANCE_SUITES; do
                # greenlet's suite checks thread-state handling, which differs
                # per CPython version: it runs on every one. execnet's and
                # xdist's are pure Python on our side, and gevent's runs on
                # 3.11 only to stay inside CI's time: once is enough.
                if [ "$suite" != greenlet ] && [ "$v" != "$CONFORMANCE_PYTHON" ]; then continue; fi
                stage "CPython $v: conformance $suite"
                if [ -n "${CONFORMANCE_DEPS[$suite]:-}" ]; then
                    # shellcheck disable=SC2086  # a list of names
                    "$venv/bin/python" -m pip install -q ${CONFORMANCE_DEPS[$suite]}
                fi
                if [ "$suite" = execnet ]; then ensure_sshd; fi
                # Prints the known and NEW failures and "N passed, N failed,
                # N skipped" (known failures counted); exits 1 on a NEW failure.
                PATH="$stage_path" allowed_to_fail "$CONFORMANCE_XFAIL" "$suite" \
                    "$venv/bin/python" -m weft.conformance "$suite"
            done
        else
            echo "NOTE: python/weft/conformance.py does not exist yet; no conformance runs"
        fi
    fi

    # Once the cp311 and cp312 wheels both exist: each one's extension loaded
    # by the other CPython must say what it was built for (docs/wheels.md).
    if [ -n "$(ls "$CI_DIST"/$(wheel_glob 3.11 x86_64) 2>/dev/null)" ] &&
       [ -n "$(ls "$CI_DIST"/$(wheel_glob 3.12 x86_64) 2>/dev/null)" ] && [ -z "${WRONG_DONE:-}" ]; then
        WRONG_DONE=1
        stage "wheels on the wrong CPython (scripts/test-wheels.sh --wrong-version)"
        WEFT_DIST="$CI_DIST" bash scripts/test-wheels.sh --wrong-version
    fi
done

# ---- 3. CPython 3.14 / 3.15 from Debian sid (chroot) ------------------------
if [ -n "$SID_PYTHONS" ]; then
    stage "Debian sid root (debootstrap or cached)"
    bash scripts/sid.sh --prepare
    for v in $SID_PYTHONS; do
        stage "CPython $v (Debian sid chroot): build wheel + pytest"
        allowed_to_fail "$SID_XFAIL" "$v" bash scripts/sid.sh "$v"
    done
fi

stage_end
