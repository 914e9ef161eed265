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
# pytest exits 5 when it collected no test at all; that (and only that) is
# tolerated while tests/ is still empty. Any other failure propagates.
run_pytest() {
    local py="$1"; shift
    if [ ! -d tests ] || [ -z "$(find tests -name 'test_*.py' -o -name '*_test.py' | head -n1)" ]; then
        echo "NOTE: tests/ has no test files yet; skipping pytest"
        return 0
    fi
    local rc=0
    "$py" -m pytest -q tests "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "NOTE: pytest collected no tests (exit 5); treating as success"
        return 0
    fi
    return "$rc"
}
