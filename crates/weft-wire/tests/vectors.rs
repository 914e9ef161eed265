//! The shared vectors in tests/vectors/wire.json, which the pure-Python
//! codec is checked against too (tests/test_wire.py).

use serde_json::Value as Json;
use std::path::PathBuf;
use weft_wire::{decode, decode_with, encode, encode_versioned, LoadOptions, Value};

fn vectors() -> Json {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/wire.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("wire.json is valid JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn bits(s: &str) -> f64 {
    f64::from_bits(u64::from_str_radix(s, 16).expect("float bits"))
}

fn to_value(j: &Json) -> Value {
    let t = j["t"].as_str().expect("tag");
    let items = || {
        j["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(to_value)
            .collect::<Vec<_>>()
    };
    match t {
        "none" => Value::None,
        "bool" => Value::Bool(j["v"].as_bool().unwrap()),
        "int" => {
            let s = j["v"].as_str().unwrap();
            match s.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::BigInt(s.to_owned()),
            }
        }
        "float" => Value::Float(bits(j["bits"].as_str().unwrap())),
        "complex" => Value::Complex(
            bits(j["re"].as_str().unwrap()),
            bits(j["im"].as_str().unwrap()),
        ),
        "bytes" => Value::Bytes(unhex(j["hex"].as_str().unwrap())),
        "str" => Value::Str(j["v"].as_str().unwrap().to_owned()),
        "tuple" => Value::Tuple(items()),
        "list" => Value::List(items()),
        "set" => Value::Set(items()),
        "frozenset" => Value::FrozenSet(items()),
        "dict" => Value::Dict(
            j["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| (to_value(&kv[0]), to_value(&kv[1])))
                .collect(),
        ),
        "channel" => Value::Channel(j["id"].as_u64().unwrap() as u32),
        "nested" => {
            let mut v = to_value(&j["leaf"]);
            for _ in 0..j["depth"].as_u64().unwrap() {
                v = match j["kind"].as_str().unwrap() {
                    "tuple" => Value::Tuple(vec![v]),
                    "list" => Value::List(vec![v]),
                    "dict" => Value::Dict(vec![(to_value(&j["key"]), v)]),
                    other => panic!("unknown nested kind {other}"),
                };
            }
            v
        }
        other => panic!("unknown tag {other}"),
    }
}

fn options(j: &Json) -> LoadOptions {
    let mut o = LoadOptions::default();
    if let Some(m) = j.get("options").and_then(Json::as_object) {
        for (k, v) in m {
            let v = v.as_bool().expect("bool option");
            match k.as_str() {
                "versioned" => o.versioned = v,
                "py2str_as_py3str" => o.py2str_as_py3str = v,
                "py3str_as_py2str" => o.py3str_as_py2str = v,
                other => panic!("unknown option {other}"),
            }
        }
    }
    o
}

#[test]
fn valid_vectors_decode_and_encode() {
    let doc = vectors();
    let valid = doc["valid"].as_array().unwrap();
    assert!(valid.len() >= 60, "vector file looks truncated");
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let bytes = unhex(v["hex"].as_str().unwrap());
        let opts = options(v);
        let got = decode_with(&bytes, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        if v.get("python_only").is_some() {
            // Semantics differ by design (see the note); only decoding must succeed.
            continue;
        }
        let want = to_value(&v["value"]);
        assert!(
            got.identical(&want),
            "{name}: decoded {got:?}, want {want:?}"
        );
        if v["encode"].as_bool().unwrap() {
            let out = if opts.versioned {
                encode_versioned(&want)
            } else {
                encode(&want)
            };
            assert_eq!(
                out.unwrap_or_else(|e| panic!("{name}: {e}")),
                bytes,
                "{name}: encode"
            );
        }
    }
}

#[test]
fn malformed_vectors_fail() {
    let doc = vectors();
    let bad = doc["malformed"].as_array().unwrap();
    assert!(bad.len() >= 50, "vector file looks truncated");
    for v in bad {
        let name = v["name"].as_str().unwrap();
        let bytes = unhex(v["hex"].as_str().unwrap());
        match decode_with(&bytes, &options(v)) {
            Ok(val) => panic!("{name}: decoded to {val:?}, expected LoadError"),
            Err(e) => assert!(!e.message().is_empty(), "{name}: empty message"),
        }
    }
}

#[test]
fn frame_vectors() {
    let doc = vectors();
    for f in doc["frames"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let code = f["msgcode"].as_u64().unwrap() as u8;
        let chan = f["channel"].as_u64().unwrap() as u32;
        let payload = unhex(f["payload_hex"].as_str().unwrap());
        let want = unhex(f["hex"].as_str().unwrap());
        assert_eq!(
            weft_wire::pack_message(code, chan, &payload).unwrap(),
            want,
            "{name}"
        );
        let h = weft_wire::unpack_header(&want[..weft_wire::HEADER_SIZE]).unwrap();
        assert_eq!(
            (h.msgcode, h.channel_id, h.length as usize),
            (code, chan, payload.len()),
            "{name}"
        );
    }
    for f in doc["bad_headers"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let bytes = unhex(f["hex"].as_str().unwrap());
        assert!(
            weft_wire::unpack_header(&bytes).is_err(),
            "{name}: accepted"
        );
    }
}

#[test]
fn limits_match_the_vector_file() {
    let doc = vectors();
    assert_eq!(
        doc["max_depth"].as_u64().unwrap() as usize,
        weft_wire::MAX_DEPTH
    );
    assert_eq!(
        doc["max_int_digits"].as_u64().unwrap() as usize,
        weft_wire::MAX_INT_DIGITS
    );
}

#[test]
fn every_opcode_is_covered() {
    let doc = vectors();
    let mut seen = std::collections::BTreeSet::new();
    for v in doc["valid"].as_array().unwrap() {
        let bytes = unhex(v["hex"].as_str().unwrap());
        // walk the opcode stream with a decoder-aware skip of operands
        let mut i = usize::from(options(v).versioned);
        while i < bytes.len() {
            let op = bytes[i];
            seen.insert(op);
            i += 1;
            i += match op {
                b'F' | b'G' | b'B' | b'K' | b'@' | b'O' | b'E' => 4,
                b'D' => 8,
                b'T' => 16,
                b'A' | b'H' | b'I' | b'M' | b'N' | b'S' => {
                    4 + u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize
                }
                _ => 0,
            };
        }
    }
    let all: std::collections::BTreeSet<u8> = (b'@'..=b'T').collect();
    let missing: Vec<char> = all.difference(&seen).map(|&b| b as char).collect();
    assert!(
        missing.is_empty(),
        "opcodes without a valid vector: {missing:?}"
    );
    let _ = decode(b"LQ").unwrap();
}

#[test]
fn limit_vectors() {
    let doc = vectors();
    assert_eq!(doc["max_values"].as_u64().unwrap() as usize, weft_wire::MAX_VALUES);
    assert_eq!(doc["max_containers"].as_u64().unwrap() as usize, weft_wire::MAX_CONTAINERS);
    assert_eq!(doc["max_channels"].as_u64().unwrap() as usize, weft_wire::MAX_CHANNELS);
    let limits = doc["limits"].as_array().unwrap();
    assert!(limits.len() >= 6);
    for v in limits {
        let name = v["name"].as_str().unwrap();
        let mut data = Vec::new();
        for part in v["parts"].as_array().unwrap() {
            let bytes = unhex(part[0].as_str().unwrap());
            for _ in 0..part[1].as_u64().unwrap() {
                data.extend_from_slice(&bytes);
            }
        }
        match (decode(&data), v["ok"].as_bool().unwrap_or(false)) {
            (Ok(_), true) => {}
            (Ok(_), false) => panic!("{name}: decoded, expected LoadError"),
            (Err(e), true) => panic!("{name}: {e}"),
            (Err(e), false) => {
                assert_eq!(e.message(), v["error"].as_str().unwrap(), "{name}");
                assert_eq!(e.offset() as u64, v["offset"].as_u64().unwrap(), "{name}");
            }
        }
    }
}
