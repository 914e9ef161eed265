# Shared helpers for scripts/test.sh and scripts/sid.sh (sourced, not run).
# shellcheck shell=bash

# Repo root and the gitignored work dir (venvs, target dirs, the sid root).
WEFT_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEFT_CI_WORK="${WEFT_CI_WORK:-$WEFT_REPO/.ci-work}"
export WEFT_REPO WEFT_CI_WORK

# maturin must never try to download a Rust toolchain: use the one installed.
export MATURIN_NO_INSTALL_RUST=1
# No prompts from apt or pip, ever (CI has no stdin).
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# rustup's cargo is not always on PATH in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

section() {
    printf '\n======== %s ========  (%s)\n' "$*" "$(date -u +%H:%M:%S)"
}

die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

# run_pytest PYTHON [ARGS...]: run pytest on tests/ from the repo root.
# Every failure propagates, "no tests collected" (pytest's exit 5) included:
# a run that tested nothing is not a pass.
run_pytest() {
    local py="$1"; shift
    if [ ! -d tests ] || [ -z "$(find tests -name 'test_*.py' -o -name '*_test.py' | head -n1)" ]; then
        echo "ERROR: tests/ has no test files: nothing to run is a failure, not a pass" >&2
        return 5
    fi
    local rc=0
    "$py" -m pytest -q tests "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "ERROR: pytest collected no tests (exit 5): a run that tested nothing fails" >&2
    fi
    return "$rc"
}
