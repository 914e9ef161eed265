//! Value -> bytes, exactly as the Python twin's `dumps`.

use crate::error::DumpError;
use crate::opcode as op;
use crate::value::{check_decimal, Value};
use crate::{DUMPFORMAT_VERSION, MAX_DEPTH};

/// Encode `value` in execnet's unversioned form (channel payloads).
pub fn encode(value: &Value) -> Result<Vec<u8>, DumpError> {
    let mut out = Vec::new();
    save(&mut out, value, 0)?;
    out.push(op::STOP);
    Ok(out)
}

/// Append the unversioned encoding of `value` to `out` (for framing without
/// a copy: the caller reserves the header first). On error `out` may hold a
/// partial encoding after its original length.
pub fn encode_append(out: &mut Vec<u8>, value: &Value) -> Result<(), DumpError> {
    save(out, value, 0)?;
    out.push(op::STOP);
    Ok(())
}

/// Encode with the leading version byte, as `execnet.dumps`.
pub fn encode_versioned(value: &Value) -> Result<Vec<u8>, DumpError> {
    let mut out = vec![DUMPFORMAT_VERSION];
    save(&mut out, value, 0)?;
    out.push(op::STOP);
    Ok(out)
}

fn len4(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), DumpError> {
    let n = i32::try_from(n).map_err(|_| {
        DumpError::new(format!(
            "{what} of length {n} is too long for the wire (max 2**31-1)"
        ))
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn save_int(out: &mut Vec<u8>, i: i64) {
    if let Ok(small) = i32::try_from(i) {
        out.push(op::INT);
        out.extend_from_slice(&small.to_be_bytes());
    } else {
        let text = i.to_string();
        out.push(op::LONGINT);
        // at most 20 bytes: cannot overflow i32
        out.extend_from_slice(&(text.len() as i32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
}

fn save(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), DumpError> {
    match value {
        Value::None => out.push(op::NONE),
        Value::Bool(true) => out.push(op::TRUE),
        Value::Bool(false) => out.push(op::FALSE),
        Value::Int(i) => save_int(out, *i),
        Value::BigInt(text) => {
            check_decimal(text.as_bytes())
                .map_err(|why| DumpError::new(format!("{why}: {:?}", truncate(text))))?;
            // Same bytes as Python: small values take the short form.
            match text.parse::<i64>() {
                Ok(i) => save_int(out, i),
                Err(_) => {
                    out.push(op::LONGINT);
                    len4(out, text.len(), "int")?;
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
        Value::Float(f) => {
            out.push(op::FLOAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Complex(re, im) => {
            out.push(op::COMPLEX);
            out.extend_from_slice(&re.to_be_bytes());
            out.extend_from_slice(&im.to_be_bytes());
        }
        Value::Bytes(b) => {
            out.push(op::BYTES);
            len4(out, b.len(), "bytes")?;
            out.extend_from_slice(b);
        }
        Value::Str(s) => {
            out.push(op::PY3STRING);
            len4(out, s.len(), "str")?;
            out.extend_from_slice(s.as_bytes());
        }
        Value::Channel(id) => {
            let id = i32::try_from(*id)
                .map_err(|_| DumpError::new(format!("channel id {id} is not in 0..2**31-1")))?;
            out.push(op::CHANNEL);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Value::Tuple(items) | Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
            let depth = enter(depth, value)?;
            if let Value::List(_) = value {
                out.push(op::NEWLIST);
                len4(out, items.len(), "list")?;
                for (i, item) in items.iter().enumerate() {
                    out.push(op::INT);
                    // len4 above proved every index fits in i32
                    out.extend_from_slice(&(i as i32).to_be_bytes());
                    save(out, item, depth)?;
                    out.push(op::SETITEM);
                }
            } else {
                for item in items {
                    if !matches!(value, Value::Tuple(_)) && !item.is_hashable() {
                        return Err(DumpError::new(format!(
                            "unhashable {} inside a {}",
                            item.type_name(),
                            value.type_name()
                        )));
                    }
                    save(out, item, depth)?;
                }
                let code = match value {
                    Value::Tuple(_) => op::BUILDTUPLE,
                    Value::Set(_) => op::SET,
                    _ => op::FROZENSET,
                };
                out.push(code);
                len4(out, items.len(), value.type_name())?;
            }
        }
        Value::Dict(pairs) => {
            let depth = enter(depth, value)?;
            out.push(op::NEWDICT);
            for (k, v) in pairs {
                if !k.is_hashable() {
                    return Err(DumpError::new(format!(
                        "unhashable dict key of type {}",
                        k.type_name()
                    )));
                }
                save(out, k, depth)?;
                save(out, v, depth)?;
                out.push(op::SETITEM);
            }
        }
    }
    Ok(())
}

fn enter(depth: usize, value: &Value) -> Result<usize, DumpError> {
    if depth + 1 > MAX_DEPTH {
        return Err(DumpError::new(format!(
            "containers nested deeper than {MAX_DEPTH} (at a {})",
            value.type_name()
        )));
    }
    Ok(depth + 1)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
