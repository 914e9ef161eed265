//! Stable-toolchain fuzzing: mutate the shared vectors with a seeded
//! xorshift generator and drive the decoder, checking the same properties as
//! the cargo-fuzz target in fuzz/ (no panic; a decoded value re-encodes and
//! decodes to itself). Iterations: WEFT_WIRE_FUZZ_ITERS (default 20000);
//! seed: WEFT_WIRE_FUZZ_SEED (default fixed, so failures reproduce).

use std::path::PathBuf;
use weft_wire::{decode, decode_with, encode, LoadOptions};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/wire.json");
    let text = std::fs::read_to_string(&path).expect("read wire.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut out = Vec::new();
    for section in ["valid", "malformed"] {
        for v in doc[section].as_array().unwrap() {
            let h = v["hex"].as_str().unwrap();
            out.push(
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect(),
            );
        }
    }
    // the committed seed corpus (grown by scripts/fuzz_wire_diff.py)
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/fuzz-corpus");
    if let Ok(dir) = std::fs::read_dir(&corpus) {
        let mut files: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            out.push(std::fs::read(&f).expect("read corpus file"));
        }
    }
    out
}

/// Interesting operand bytes: boundaries of i32 counts and every opcode.
const DICT: &[&[u8]] = &[
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x00\x00\x00\x01",
    b"P",
    b"Q",
    b"K\x00\x00\x00\x01",
    b"J",
    b"@\x00\x00\x00\x02",
    b"F\x00\x00\x00\x00",
    b"H\x00\x00\x00\x01",
    b"O\x00\x00\x00\x01",
    b"E\x00\x00\x00\x01",
];

fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let pos = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = pos.min(input.len() - 1);
                input[i] = rng.next() as u8;
            }
            1 if !input.is_empty() => {
                let i = pos.min(input.len() - 1);
                input[i] ^= 1 << rng.below(8);
            }
            2 => {
                let d = DICT[rng.below(DICT.len())];
                input.splice(pos..pos, d.iter().copied());
            }
            3 => {
                let end = (pos + 1 + rng.below(8)).min(input.len());
                input.drain(pos.min(end)..end);
            }
            4 => input.truncate(pos),
            _ => {
                // duplicate a slice (grows nesting and repetition)
                let start = rng.below(input.len() + 1);
                let end = (start + rng.below(16)).min(input.len());
                let chunk: Vec<u8> = input[start..end].to_vec();
                input.splice(pos..pos, chunk);
            }
        }
    }
}

fn check(data: &[u8]) {
    if let Ok(v) = decode(data) {
        let bytes = encode(&v).unwrap_or_else(|e| panic!("re-encode of {data:02x?} failed: {e}"));
        let back =
            decode(&bytes).unwrap_or_else(|e| panic!("re-decode of {data:02x?} failed: {e}"));
        assert!(
            back.identical(&v),
            "round trip changed {v:?} (input {data:02x?})"
        );
    }
    let opts = LoadOptions {
        versioned: true,
        py2str_as_py3str: false,
        py3str_as_py2str: true,
    };
    let _ = decode_with(data, &opts);
}

#[test]
fn mutated_vectors_never_panic_and_round_trip() {
    let iters: usize = std::env::var("WEFT_WIRE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("WEFT_WIRE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let corpus = seeds();
    let mut rng = XorShift(seed | 1);
    let mut decoded_ok = 0usize;
    for _ in 0..iters {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input);
        if decode(&input).is_ok() {
            decoded_ok += 1;
        }
        check(&input);
    }
    // The mutator must still reach the decoder's success paths, or the test
    // would only be exercising the first error check.
    assert!(
        decoded_ok * 50 >= iters,
        "only {decoded_ok} of {iters} mutants decoded"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let input: Vec<u8> = (0..len).map(|_| b'@' + (rng.next() % 24) as u8).collect();
        check(&input);
    }
}
