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

/// Writes the serializer's opcodes into a byte vector, one value part at a
/// time: the one place that knows how each kind of value is spelled. The
/// [`Value`] encoder below walks a tree with it; the Python binding
/// (`weft-py`) walks Python objects with it, without building a tree.
/// A caller emits a container's items between its start and end calls.
pub struct Emitter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Emitter<'a> {
    /// Emit into `out`, after what it holds.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Emitter { out }
    }

    /// `None`.
    pub fn none(&mut self) {
        self.out.push(op::NONE);
    }

    /// `True` / `False`.
    pub fn bool(&mut self, b: bool) {
        self.out.push(if b { op::TRUE } else { op::FALSE });
    }

    /// An int: the short form when it fits in 32 bits.
    pub fn int(&mut self, i: i64) {
        if let Ok(small) = i32::try_from(i) {
            self.out.push(op::INT);
            self.out.extend_from_slice(&small.to_be_bytes());
        } else {
            let text = i.to_string();
            self.out.push(op::LONGINT);
            // at most 20 bytes: cannot overflow i32
            self.out.extend_from_slice(&(text.len() as i32).to_be_bytes());
            self.out.extend_from_slice(text.as_bytes());
        }
    }

    /// An int given as canonical decimal text (the same bytes as
    /// [`Emitter::int`] when it fits in an i64).
    pub fn int_text(&mut self, text: &str) -> Result<(), DumpError> {
        check_decimal(text.as_bytes())
            .map_err(|why| DumpError::new(format!("{why}: {:?}", truncate(text))))?;
        match text.parse::<i64>() {
            Ok(i) => self.int(i),
            Err(_) => {
                self.out.push(op::LONGINT);
                len4(self.out, text.len(), "int")?;
                self.out.extend_from_slice(text.as_bytes());
            }
        }
        Ok(())
    }

    /// A float.
    pub fn float(&mut self, f: f64) {
        self.out.push(op::FLOAT);
        self.out.extend_from_slice(&f.to_be_bytes());
    }

    /// A complex number.
    pub fn complex(&mut self, re: f64, im: f64) {
        self.out.push(op::COMPLEX);
        self.out.extend_from_slice(&re.to_be_bytes());
        self.out.extend_from_slice(&im.to_be_bytes());
    }

    /// Bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), DumpError> {
        self.out.push(op::BYTES);
        len4(self.out, b.len(), "bytes")?;
        self.out.extend_from_slice(b);
        Ok(())
    }

    /// Text.
    pub fn str(&mut self, s: &str) -> Result<(), DumpError> {
        self.out.push(op::PY3STRING);
        len4(self.out, s.len(), "str")?;
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// A channel reference.
    pub fn channel(&mut self, id: u32) -> Result<(), DumpError> {
        let id = i32::try_from(id)
            .map_err(|_| DumpError::new(format!("channel id {id} is not in 0..2**31-1")))?;
        self.out.push(op::CHANNEL);
        self.out.extend_from_slice(&id.to_be_bytes());
        Ok(())
    }

    /// Start a list of `n` items; each item is [`Emitter::list_item`], the
    /// item, then [`Emitter::setitem`].
    pub fn list_start(&mut self, n: usize) -> Result<(), DumpError> {
        self.out.push(op::NEWLIST);
        len4(self.out, n, "list")
    }

    /// Before the item at `index` of a list (its index, which
    /// [`Emitter::list_start`] proved fits in an i32).
    pub fn list_item(&mut self, index: usize) {
        self.out.push(op::INT);
        self.out.extend_from_slice(&(index as i32).to_be_bytes());
    }

    /// Start a dict; each entry is the key, the value, then
    /// [`Emitter::setitem`].
    pub fn dict_start(&mut self) {
        self.out.push(op::NEWDICT);
    }

    /// After a list item or a dict entry.
    pub fn setitem(&mut self) {
        self.out.push(op::SETITEM);
    }

    /// After the `n` items of a tuple.
    pub fn tuple_end(&mut self, n: usize) -> Result<(), DumpError> {
        self.out.push(op::BUILDTUPLE);
        len4(self.out, n, "tuple")
    }

    /// After the `n` items of a set (`frozen`: a frozenset).
    pub fn set_end(&mut self, n: usize, frozen: bool) -> Result<(), DumpError> {
        self.out.push(if frozen { op::FROZENSET } else { op::SET });
        len4(self.out, n, if frozen { "frozenset" } else { "set" })
    }

    /// The end of the value.
    pub fn stop(&mut self) {
        self.out.push(op::STOP);
    }
}

fn save(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), DumpError> {
    let mut e = Emitter::new(out);
    match value {
        Value::None => e.none(),
        Value::Bool(b) => e.bool(*b),
        Value::Int(i) => e.int(*i),
        // Same bytes as Python: small values take the short form.
        Value::BigInt(text) => e.int_text(text)?,
        Value::Float(f) => e.float(*f),
        Value::Complex(re, im) => e.complex(*re, *im),
        Value::Bytes(b) => e.bytes(b)?,
        Value::Str(s) => e.str(s)?,
        Value::Channel(id) => e.channel(*id)?,
        Value::List(items) => {
            let depth = enter(depth, value)?;
            e.list_start(items.len())?;
            for (i, item) in items.iter().enumerate() {
                Emitter::new(out).list_item(i);
                save(out, item, depth)?;
                Emitter::new(out).setitem();
            }
        }
        Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            let depth = enter(depth, value)?;
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
            let mut e = Emitter::new(out);
            match value {
                Value::Tuple(_) => e.tuple_end(items.len())?,
                _ => e.set_end(items.len(), matches!(value, Value::FrozenSet(_)))?,
            }
        }
        Value::Dict(pairs) => {
            let depth = enter(depth, value)?;
            e.dict_start();
            for (k, v) in pairs {
                if !k.is_hashable() {
                    return Err(DumpError::new(format!(
                        "unhashable dict key of type {}",
                        k.type_name()
                    )));
                }
                save(out, k, depth)?;
                save(out, v, depth)?;
                Emitter::new(out).setitem();
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
