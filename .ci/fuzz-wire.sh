#!/usr/bin/env bash
# Fuzz the weft-wire decoder briefly (the Rust decoder alone; the
# differential run of both decoders is scripts/fuzz_wire_diff.py, which
# scripts/test.sh runs once a Python with weft is installed).
#
# With a nightly toolchain and cargo-fuzz: runs the libFuzzer target
# fuzz/fuzz_targets/decode.rs for FUZZ_SECONDS (default 30), seeded from
# tests/vectors/wire.json, with memory limits so a large allocation counts as
# a crash. Without them (stable only): runs the stable mutation fuzzer
# crates/weft-wire/tests/mutate.rs with WEFT_WIRE_FUZZ_ITERS (default 5000000).
# Both are seeded with the vectors and the committed corpus
# tests/vectors/fuzz-corpus/.
# Set FUZZ_MODE=stable or FUZZ_MODE=libfuzzer to force one.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-30}"
mode="${FUZZ_MODE:-auto}"

have_libfuzzer() {
    cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1
}

if [ "$mode" = auto ]; then
    if have_libfuzzer; then mode=libfuzzer; else mode=stable; fi
fi

case "$mode" in
libfuzzer)
    corpus="fuzz/corpus/decode"
    mkdir -p "$corpus"
    # seed corpus: every vector, valid and malformed, one file each
    python3 - "$corpus" <<'PY'
import json, sys, os
doc = json.load(open("tests/vectors/wire.json"))
for sec in ("valid", "malformed"):
    for i, v in enumerate(doc[sec]):
        with open(os.path.join(sys.argv[1], "%s-%03d" % (sec, i)), "wb") as f:
            f.write(bytes.fromhex(v["hex"]))
PY
    cp tests/vectors/fuzz-corpus/* "$corpus"/ 2>/dev/null || true
    echo "fuzz-wire: libFuzzer for ${secs}s"
    cargo +nightly fuzz run decode "$corpus" -- \
        -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=128 -max_len=65536
    ;;
stable)
    iters="${WEFT_WIRE_FUZZ_ITERS:-5000000}"
    echo "fuzz-wire: stable mutation fuzzer, $iters iterations"
    WEFT_WIRE_FUZZ_ITERS="$iters" cargo test --release -p weft-wire --test mutate
    ;;
*)
    echo "fuzz-wire: unknown FUZZ_MODE=$mode (auto, libfuzzer, stable)" >&2
    exit 2
    ;;
esac
