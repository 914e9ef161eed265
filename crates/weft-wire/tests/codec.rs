//! Unit-level behaviour of encode/decode beyond the shared vectors.

use weft_wire::{decode, decode_with, encode, encode_versioned, LoadOptions, Value, MAX_DEPTH};

fn rt(v: &Value) -> Value {
    let bytes = encode(v).unwrap_or_else(|e| panic!("encode {v:?}: {e}"));
    decode(&bytes).unwrap_or_else(|e| panic!("decode {v:?}: {e}"))
}

#[test]
fn literal_bytes() {
    assert_eq!(encode(&Value::None).unwrap(), b"LQ");
    assert_eq!(encode(&Value::Int(1)).unwrap(), b"F\x00\x00\x00\x01Q");
    assert_eq!(encode(&Value::Int(-1)).unwrap(), b"F\xff\xff\xff\xffQ");
    assert_eq!(encode(&Value::Int(1 << 31)).unwrap(), b"H\x00\x00\x00\x0a2147483648Q");
    assert_eq!(encode(&Value::Str("\u{e9}".into())).unwrap(), b"N\x00\x00\x00\x02\xc3\xa9Q");
    assert_eq!(
        encode(&Value::List(vec![Value::Bool(true)])).unwrap(),
        b"K\x00\x00\x00\x01F\x00\x00\x00\x00RPQ"
    );
    assert_eq!(encode(&Value::Tuple(vec![])).unwrap(), b"@\x00\x00\x00\x00Q");
    assert_eq!(encode(&Value::Float(1.0)).unwrap(), b"D\x3f\xf0\x00\x00\x00\x00\x00\x00Q");
    assert_eq!(encode(&Value::Channel(3)).unwrap(), b"B\x00\x00\x00\x03Q");
    assert_eq!(encode_versioned(&Value::None).unwrap(), b"\x02LQ");
}

#[test]
fn round_trips() {
    let vals = vec![
        Value::Int(i64::MIN),
        Value::Int(i64::MAX),
        Value::BigInt("-123456789012345678901234567890".into()),
        Value::Float(f64::NAN),
        Value::Complex(-0.0, f64::INFINITY),
        Value::Bytes(vec![0, 255]),
        Value::Dict(vec![(Value::Tuple(vec![Value::Int(1)]), Value::Set(vec![Value::Str("x".into())]))]),
        Value::FrozenSet(vec![Value::FrozenSet(vec![]), Value::Channel(9)]),
        Value::List(vec![Value::List(vec![]), Value::List(vec![Value::None, Value::Dict(vec![])])]),
    ];
    for v in &vals {
        assert!(rt(v).identical(v), "{v:?}");
    }
}

#[test]
fn bigint_in_i64_range_is_normalised() {
    assert_eq!(encode(&Value::BigInt("5".into())).unwrap(), encode(&Value::Int(5)).unwrap());
    assert_eq!(rt(&Value::BigInt("9223372036854775807".into())), Value::Int(i64::MAX));
    assert_eq!(
        rt(&Value::BigInt("9223372036854775808".into())),
        Value::BigInt("9223372036854775808".into())
    );
}

#[test]
fn dump_errors_name_the_problem() {
    let e = encode(&Value::BigInt("12a".into())).unwrap_err();
    assert!(e.message().contains("malformed long int"), "{e}");
    let e = encode(&Value::BigInt("007".into())).unwrap_err();
    assert!(e.message().contains("non-canonical"), "{e}");
    let e = encode(&Value::Channel(1 << 31)).unwrap_err();
    assert!(e.message().contains("channel id"), "{e}");
    let e = encode(&Value::Set(vec![Value::List(vec![])])).unwrap_err();
    assert!(e.message().contains("unhashable list"), "{e}");
    let e = encode(&Value::Dict(vec![(Value::Dict(vec![]), Value::None)])).unwrap_err();
    assert!(e.message().contains("unhashable dict key"), "{e}");
}

fn nest(depth: usize) -> Value {
    let mut v = Value::None;
    for _ in 0..depth {
        v = Value::Tuple(vec![v]);
    }
    v
}

#[test]
fn depth_limit_both_ways() {
    assert!(rt(&nest(MAX_DEPTH)).identical(&nest(MAX_DEPTH)));
    let e = encode(&nest(MAX_DEPTH + 1)).unwrap_err();
    assert!(e.message().contains("nested deeper than 256"), "{e}");
}

#[test]
fn load_error_reports_offset() {
    let e = decode(b"LLZ").unwrap_err();
    assert_eq!(e.offset(), 2);
    assert_eq!(e.to_string(), "unknown opcode 0x5a (at byte 2)");
}

#[test]
fn string_options() {
    let o = LoadOptions { py3str_as_py2str: true, ..LoadOptions::default() };
    assert_eq!(decode_with(b"N\x00\x00\x00\x01aQ", &o).unwrap(), Value::Bytes(b"a".to_vec()));
    let o = LoadOptions { py2str_as_py3str: false, ..LoadOptions::default() };
    assert_eq!(decode_with(b"M\x00\x00\x00\x01\xffQ", &o).unwrap(), Value::Bytes(vec![0xff]));
    assert_eq!(decode(b"M\x00\x00\x00\x01\xffQ").unwrap(), Value::Str("\u{ff}".into()));
}

#[test]
fn huge_counts_do_not_allocate() {
    // 2**31-1 list items announced in 6 bytes: refused before any allocation.
    assert!(decode(b"K\x7f\xff\xff\xffQ").is_err());
    // A long run of NEWLIST 1 headers: every reserved slot is backed by input.
    let mut v = Vec::new();
    for _ in 0..10_000 {
        v.extend_from_slice(b"K\x00\x00\x00\x01F\x00\x00\x00\x00");
    }
    v.push(b'Q');
    assert!(decode(&v).is_err());
}
