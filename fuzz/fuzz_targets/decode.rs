//! Fuzz the wire decoder: any input must give a value or a LoadError, never
//! a panic, a stack overflow or a huge allocation (libFuzzer's -rss_limit_mb
//! and -malloc_limit_mb catch those), and every decoded value must re-encode
//! and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_wire::{decode, decode_with, encode, unpack_header, LoadOptions, HEADER_SIZE};

fuzz_target!(|data: &[u8]| {
    if data.len() >= HEADER_SIZE {
        let _ = unpack_header(&data[..HEADER_SIZE]);
    }
    if let Ok(v) = decode(data) {
        let bytes = encode(&v).expect("a decoded value must re-encode");
        let back = decode(&bytes).expect("re-encoded bytes must decode");
        assert!(back.identical(&v), "round trip changed {v:?} into {back:?}");
    }
    let opts = LoadOptions { versioned: true, py2str_as_py3str: false, py3str_as_py2str: true };
    let _ = decode_with(data, &opts);
});
