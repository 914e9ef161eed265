//! Bytes -> Value (or, through a [`Builder`], any other kind of value),
//! with the same acceptance rules as the Python twin's `loads`.
//!
//! The decoder is a loop over opcodes driving a value stack (no recursion).
//! Resource bounds, each checked before the allocation it guards:
//! * every length or count is checked against the bytes that remain;
//! * NEWLIST n: `7*n + missing` must not exceed the bytes after the count,
//!   where 7 is the smallest encoding of one item (`F i32`, a 1-byte value,
//!   `P`) and `missing` counts items still owed to enclosing lists (each
//!   needs at least its `P`). Every list slot ever reserved is thus backed
//!   by a distinct input byte: total list capacity <= input length;
//! * the stack gains at most one entry per input byte;
//! * containers nest at most [`MAX_DEPTH`] deep, so dropping, comparing or
//!   re-encoding a decoded value recurses at most that far;
//! * one message makes at most [`MAX_VALUES`] values, [`MAX_CONTAINERS`]
//!   containers and [`MAX_CHANNELS`] channel references, each counted
//!   before it is made.

use crate::error::LoadError;
use crate::opcode as op;
use crate::value::{check_decimal, Value};
use crate::{DUMPFORMAT_VERSION, MAX_CHANNELS, MAX_CONTAINERS, MAX_DEPTH, MAX_VALUES};

const MIN_LIST_ITEM: usize = 7;

/// Decoder options; the defaults are those of an execnet channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Expect the leading version byte written by `execnet.dumps`.
    pub versioned: bool,
    /// PY2STRING (`M`) decodes to latin-1 text (else to bytes).
    pub py2str_as_py3str: bool,
    /// PY3STRING (`N`) decodes to bytes (else to text).
    pub py3str_as_py2str: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            versioned: false,
            py2str_as_py3str: true,
            py3str_as_py2str: false,
        }
    }
}

/// Decode one value in execnet's unversioned form with default options.
pub fn decode(data: &[u8]) -> Result<Value, LoadError> {
    decode_with(data, &LoadOptions::default())
}

/// What the decoder makes values with: [`Value`]s ([`decode_with`]), or,
/// in the Python binding, Python objects straight away. The decoder owns
/// every rule of the format (opcodes, lengths, limits, list order, depth);
/// a builder only makes the values it is told to, and fails (with the reason
/// as text) where its kind of value cannot be made: an unhashable set item
/// or dict key, or a channel reference it cannot resolve.
pub trait Builder {
    /// One decoded value.
    type Item;
    /// `None`.
    fn none(&mut self) -> Result<Self::Item, String>;
    /// `True` / `False`.
    fn bool(&mut self, b: bool) -> Result<Self::Item, String>;
    /// An int that fits in an i64.
    fn int(&mut self, i: i64) -> Result<Self::Item, String>;
    /// A bigger int, as canonical decimal text.
    fn big_int(&mut self, text: &str) -> Result<Self::Item, String>;
    /// A float.
    fn float(&mut self, f: f64) -> Result<Self::Item, String>;
    /// A complex number.
    fn complex(&mut self, re: f64, im: f64) -> Result<Self::Item, String>;
    /// Bytes.
    fn bytes(&mut self, b: &[u8]) -> Result<Self::Item, String>;
    /// Text.
    fn str(&mut self, s: &str) -> Result<Self::Item, String>;
    /// A channel reference.
    fn channel(&mut self, id: u32) -> Result<Self::Item, String>;
    /// A tuple of `items`.
    fn tuple(&mut self, items: Vec<Self::Item>) -> Result<Self::Item, String>;
    /// A list of `items`.
    fn list(&mut self, items: Vec<Self::Item>) -> Result<Self::Item, String>;
    /// A set (`frozen`: a frozenset) of `items`.
    fn set(&mut self, items: Vec<Self::Item>, frozen: bool) -> Result<Self::Item, String>;
    /// An empty dict.
    fn new_dict(&mut self) -> Result<Self::Item, String>;
    /// Store `key: value` into `dict` (made by [`Builder::new_dict`]).
    fn dict_set(&mut self, dict: &mut Self::Item, key: Self::Item, value: Self::Item) -> Result<(), String>;
    /// Whether `key` is the int `index` (a list's next SETITEM index).
    fn is_index(&self, key: &Self::Item, index: usize) -> bool;
    /// The Python type name of `item`, for error messages.
    fn type_name(&self, item: &Self::Item) -> String;
    /// A short rendering of `item`, for error messages.
    fn describe(&self, item: &Self::Item) -> String;
}

/// The builder of [`Value`] trees.
struct ValueBuilder;

impl Builder for ValueBuilder {
    type Item = Value;
    fn none(&mut self) -> Result<Value, String> {
        Ok(Value::None)
    }
    fn bool(&mut self, b: bool) -> Result<Value, String> {
        Ok(Value::Bool(b))
    }
    fn int(&mut self, i: i64) -> Result<Value, String> {
        Ok(Value::Int(i))
    }
    fn big_int(&mut self, text: &str) -> Result<Value, String> {
        Ok(Value::BigInt(text.to_owned()))
    }
    fn float(&mut self, f: f64) -> Result<Value, String> {
        Ok(Value::Float(f))
    }
    fn complex(&mut self, re: f64, im: f64) -> Result<Value, String> {
        Ok(Value::Complex(re, im))
    }
    fn bytes(&mut self, b: &[u8]) -> Result<Value, String> {
        Ok(Value::Bytes(b.to_vec()))
    }
    fn str(&mut self, s: &str) -> Result<Value, String> {
        Ok(Value::Str(s.to_owned()))
    }
    fn channel(&mut self, id: u32) -> Result<Value, String> {
        Ok(Value::Channel(id))
    }
    fn tuple(&mut self, items: Vec<Value>) -> Result<Value, String> {
        Ok(Value::Tuple(items))
    }
    fn list(&mut self, items: Vec<Value>) -> Result<Value, String> {
        Ok(Value::List(items))
    }
    fn set(&mut self, items: Vec<Value>, frozen: bool) -> Result<Value, String> {
        if items.iter().any(|i| !i.is_hashable()) {
            return Err(format!("unhashable item in {}", if frozen { "frozenset" } else { "set" }));
        }
        Ok(if frozen { Value::FrozenSet(items) } else { Value::Set(items) })
    }
    fn new_dict(&mut self) -> Result<Value, String> {
        Ok(Value::Dict(Vec::new()))
    }
    fn dict_set(&mut self, dict: &mut Value, key: Value, value: Value) -> Result<(), String> {
        if !key.is_hashable() {
            return Err(format!("unhashable dict key of type {}", key.type_name()));
        }
        if let Value::Dict(pairs) = dict {
            pairs.push((key, value));
        }
        Ok(())
    }
    fn is_index(&self, key: &Value, index: usize) -> bool {
        matches!(key, Value::Int(i) if *i == index as i64)
    }
    fn type_name(&self, item: &Value) -> String {
        item.type_name().to_string()
    }
    fn describe(&self, item: &Value) -> String {
        format!("{item:?}")
    }
}

enum Slot<T> {
    Done(T),
    /// A dict (SETITEM stores into it).
    Dict(T),
    /// A list whose items are still arriving: (items so far, announced size).
    Partial(Vec<T>, usize),
}

struct Entry<T> {
    slot: Slot<T>,
    depth: usize,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], LoadError> {
        if self.remaining() < n {
            return Err(LoadError::new(format!("truncated {what}"), self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i32(&mut self) -> Result<i32, LoadError> {
        let b = self.take(4, "4-byte integer")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self, what: &str) -> Result<f64, LoadError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    /// A length prefix followed by that many bytes.
    fn counted(&mut self, what: &str) -> Result<&[u8], LoadError> {
        let at = self.pos;
        let n = self.i32()?;
        if n < 0 {
            return Err(LoadError::new(format!("negative {what} length {n}"), at));
        }
        let n = n as usize;
        if n > self.remaining() {
            return Err(LoadError::new(
                format!(
                    "{what} length {n} exceeds the {} remaining bytes",
                    self.remaining()
                ),
                at,
            ));
        }
        self.take(n, what)
    }
}

fn finished<T>(slot: Slot<T>, at: usize) -> Result<T, LoadError> {
    match slot {
        Slot::Done(v) | Slot::Dict(v) => Ok(v),
        Slot::Partial(_, size) => Err(LoadError::new(
            format!("list used before its {size} items were all stored"),
            at,
        )),
    }
}

fn too_deep(at: usize) -> LoadError {
    LoadError::new(format!("containers nested deeper than {MAX_DEPTH}"), at)
}

/// Decode one value with explicit options.
pub fn decode_with(data: &[u8], opts: &LoadOptions) -> Result<Value, LoadError> {
    decode_into(data, opts, &mut ValueBuilder)
}

/// Decode one value with explicit options, making it with `b`.
pub fn decode_into<B: Builder>(data: &[u8], opts: &LoadOptions, b: &mut B) -> Result<B::Item, LoadError> {
    let mut r = Reader { data, pos: 0 };
    if opts.versioned {
        match data.first() {
            Some(&DUMPFORMAT_VERSION) => r.pos = 1,
            other => {
                return Err(LoadError::new(
                    format!("wrong dump format version {other:?}, expected {DUMPFORMAT_VERSION}"),
                    0,
                ))
            }
        }
    }
    let mut stack: Vec<Entry<B::Item>> = Vec::new();
    let mut missing: usize = 0; // announced list items not yet stored
    let (mut values, mut containers, mut channels) = (0usize, 0usize, 0usize);

    loop {
        let at = r.pos;
        let Some(&code) = data.get(at) else {
            return Err(LoadError::new("truncated: no STOP opcode", at));
        };
        r.pos += 1;
        if code != op::SETITEM && code != op::STOP {
            values += 1;
            if values > MAX_VALUES {
                return Err(LoadError::new(format!("more than {MAX_VALUES} values in one message"), at));
            }
            if matches!(code, op::NEWDICT | op::NEWLIST | op::BUILDTUPLE | op::SET | op::FROZENSET) {
                containers += 1;
                if containers > MAX_CONTAINERS {
                    return Err(LoadError::new(
                        format!("more than {MAX_CONTAINERS} containers in one message"),
                        at,
                    ));
                }
            } else if code == op::CHANNEL {
                channels += 1;
                if channels > MAX_CHANNELS {
                    return Err(LoadError::new(
                        format!("more than {MAX_CHANNELS} channel references in one message"),
                        at,
                    ));
                }
            }
        }
        let built = |v: Result<B::Item, String>| -> Result<Entry<B::Item>, LoadError> {
            Ok(Entry {
                slot: Slot::Done(v.map_err(|why| LoadError::new(why, at))?),
                depth: 0,
            })
        };
        match code {
            op::NONE => stack.push(built(b.none())?),
            op::TRUE => stack.push(built(b.bool(true))?),
            op::FALSE => stack.push(built(b.bool(false))?),
            op::INT | op::LONG => {
                let i = r.i32()?;
                stack.push(built(b.int(i64::from(i)))?);
            }
            op::LONGINT | op::LONGLONG => {
                let text = r.counted("long int")?;
                check_decimal(text).map_err(|why| {
                    let shown = String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned();
                    LoadError::new(format!("{why} {shown:?}"), at)
                })?;
                // check_decimal proved it is ASCII
                let text = std::str::from_utf8(text)
                    .map_err(|_| LoadError::new("malformed long int", at))?;
                let v = match text.parse::<i64>() {
                    Ok(i) => b.int(i),
                    Err(_) => b.big_int(text),
                };
                stack.push(built(v)?);
            }
            op::FLOAT => {
                let f = r.f64("float")?;
                stack.push(built(b.float(f))?);
            }
            op::COMPLEX => {
                if r.remaining() < 16 {
                    return Err(LoadError::new("truncated complex", at));
                }
                let re = r.f64("complex")?;
                let im = r.f64("complex")?;
                stack.push(built(b.complex(re, im))?);
            }
            op::BYTES | op::PY3STRING | op::PY2STRING | op::UNICODE => {
                let raw = r.counted("string")?;
                let v = if code == op::BYTES || (code == op::PY3STRING && opts.py3str_as_py2str) {
                    b.bytes(raw)
                } else if code == op::PY2STRING {
                    if opts.py2str_as_py3str {
                        b.str(&raw.iter().map(|&c| char::from(c)).collect::<String>())
                    } else {
                        b.bytes(raw)
                    }
                } else {
                    match std::str::from_utf8(raw) {
                        Ok(s) => b.str(s),
                        Err(e) => {
                            return Err(LoadError::new(format!("invalid UTF-8 in string: {e}"), at))
                        }
                    }
                };
                stack.push(built(v)?);
            }
            op::NEWDICT => stack.push(Entry {
                slot: Slot::Dict(b.new_dict().map_err(|why| LoadError::new(why, at))?),
                depth: 1,
            }),
            op::NEWLIST => {
                let n = r.i32()?;
                if n < 0 {
                    return Err(LoadError::new(format!("negative list length {n}"), at + 1));
                }
                let n = n as usize;
                let slot = if n == 0 {
                    Slot::Done(b.list(Vec::new()).map_err(|why| LoadError::new(why, at))?)
                } else {
                    // Each of the n new items needs >= 7 bytes of its own, each
                    // item still missing from an enclosing list >= 1 (its SETITEM).
                    if n.saturating_mul(MIN_LIST_ITEM).saturating_add(missing) > r.remaining() {
                        return Err(LoadError::new(
                            format!(
                                "list of {n} items cannot fit in the {} remaining bytes",
                                r.remaining()
                            ),
                            at,
                        ));
                    }
                    missing += n;
                    Slot::Partial(Vec::with_capacity(n), n)
                };
                stack.push(Entry { slot, depth: 1 });
            }
            op::SETITEM => {
                if stack.len() < 3 {
                    return Err(LoadError::new(
                        "SETITEM needs a container, a key and a value",
                        at,
                    ));
                }
                let (Some(v), Some(k)) = (stack.pop(), stack.pop()) else {
                    unreachable!("stack length checked above")
                };
                let d = 1 + k.depth.max(v.depth);
                let value = finished(v.slot, at)?;
                let key = finished(k.slot, at)?;
                let Some(target) = stack.last_mut() else {
                    unreachable!("stack length checked above")
                };
                match &mut target.slot {
                    Slot::Dict(dict) => {
                        b.dict_set(dict, key, value).map_err(|why| LoadError::new(why, at))?;
                    }
                    Slot::Partial(items, size) => {
                        if !b.is_index(&key, items.len()) {
                            return Err(LoadError::new(
                                format!(
                                    "list index {} out of order, expected {}",
                                    b.describe(&key),
                                    items.len()
                                ),
                                at,
                            ));
                        }
                        items.push(value);
                        missing -= 1;
                        values -= 1; // the index is gone: it does not count
                        if items.len() == *size {
                            let full = std::mem::take(items);
                            target.slot = Slot::Done(b.list(full).map_err(|why| LoadError::new(why, at))?);
                        }
                    }
                    Slot::Done(other) => {
                        return Err(LoadError::new(
                            format!(
                                "SETITEM target is a {}, not a dict or an unfilled list",
                                b.type_name(other)
                            ),
                            at,
                        ))
                    }
                }
                if d > target.depth {
                    if d > MAX_DEPTH {
                        return Err(too_deep(at));
                    }
                    target.depth = d;
                }
            }
            op::BUILDTUPLE | op::SET | op::FROZENSET => {
                let n = r.i32()?;
                let name = match code {
                    op::BUILDTUPLE => "BUILDTUPLE",
                    op::SET => "SET",
                    _ => "FROZENSET",
                };
                if n < 0 || n as usize > stack.len() {
                    return Err(LoadError::new(
                        format!("{name} of {n} items but the stack holds {}", stack.len()),
                        at,
                    ));
                }
                // taken straight off the stack (no intermediate copy of the
                // entries: a million-item tuple would double its peak)
                let start = stack.len() - n as usize;
                let depth = 1 + stack[start..].iter().map(|e| e.depth).max().unwrap_or(0);
                if depth > MAX_DEPTH {
                    return Err(too_deep(at));
                }
                let mut items = Vec::with_capacity(n as usize);
                for e in stack.drain(start..) {
                    items.push(finished(e.slot, at)?);
                }
                let v = match code {
                    op::BUILDTUPLE => b.tuple(items),
                    op::SET => b.set(items, false),
                    _ => b.set(items, true),
                };
                stack.push(Entry {
                    slot: Slot::Done(v.map_err(|why| LoadError::new(why, at))?),
                    depth,
                });
            }
            op::CHANNEL => {
                let id = r.i32()?;
                if id < 0 {
                    return Err(LoadError::new(format!("negative channel id {id}"), at));
                }
                stack.push(built(b.channel(id as u32))?);
            }
            op::STOP => {
                if stack.len() != 1 {
                    return Err(LoadError::new(
                        format!("STOP with {} values on the stack, expected 1", stack.len()),
                        at,
                    ));
                }
                if r.remaining() != 0 {
                    return Err(LoadError::new(
                        format!("{} trailing bytes after STOP", r.remaining()),
                        r.pos,
                    ));
                }
                let Some(top) = stack.pop() else {
                    unreachable!("stack length checked above")
                };
                return finished(top.slot, at);
            }
            other => return Err(LoadError::new(format!("unknown opcode 0x{other:02x}"), at)),
        }
    }
}
