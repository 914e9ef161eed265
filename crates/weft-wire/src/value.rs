//! The values the wire can carry.

/// One serializable value, mirroring the Python types execnet supports.
///
/// Containers keep their items in wire order; the codec neither sorts nor
/// removes duplicates (Python does that when it builds a dict or set).
/// Derived equality compares floats with `==`, so `NaN != NaN`; use
/// [`Value::identical`] to compare bit patterns.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int in the i64 range.
    Int(i64),
    /// An int outside the i64 range as canonical decimal text: optional
    /// `-`, no leading zeros, at most [`crate::MAX_INT_DIGITS`] digits.
    /// The encoder checks the text; the decoder only produces it for
    /// values that do not fit in [`Value::Int`].
    BigInt(String),
    /// A float (IEEE-754 binary64, bits preserved).
    Float(f64),
    /// A complex number `(real, imag)`.
    Complex(f64, f64),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `str`.
    Str(String),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `list`.
    List(Vec<Value>),
    /// `dict` as (key, value) pairs in wire order.
    Dict(Vec<(Value, Value)>),
    /// `set`, items in wire order.
    Set(Vec<Value>),
    /// `frozenset`, items in wire order.
    FrozenSet(Vec<Value>),
    /// A reference to a channel by id (0..=2^31-1).
    Channel(u32),
}

impl Value {
    /// Whether Python could hash this value: lists, dicts and sets (also
    /// inside tuples) cannot be dict keys or set items.
    pub fn is_hashable(&self) -> bool {
        match self {
            Value::List(_) | Value::Dict(_) | Value::Set(_) => false,
            Value::Tuple(items) => items.iter().all(Value::is_hashable),
            _ => true,
        }
    }

    /// Structural equality that compares floats by their bits, so a value
    /// holding NaN is identical to itself and `0.0` differs from `-0.0`.
    pub fn identical(&self, other: &Value) -> bool {
        fn all(a: &[Value], b: &[Value]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.identical(y))
        }
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Complex(a, b), Value::Complex(c, d)) => {
                a.to_bits() == c.to_bits() && b.to_bits() == d.to_bits()
            }
            (Value::Tuple(a), Value::Tuple(b))
            | (Value::List(a), Value::List(b))
            | (Value::Set(a), Value::Set(b))
            | (Value::FrozenSet(a), Value::FrozenSet(b)) => all(a, b),
            (Value::Dict(a), Value::Dict(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|((k1, v1), (k2, v2))| k1.identical(k2) && v1.identical(v2))
            }
            _ => self == other,
        }
    }

    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Complex(..) => "complex",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Channel(_) => "channel",
        }
    }
}

/// Check that `text` is canonical decimal: `-?(0|[1-9][0-9]*)`, not `-0`,
/// at most [`crate::MAX_INT_DIGITS`] digits. Returns a reason on failure.
pub(crate) fn check_decimal(text: &[u8]) -> Result<(), &'static str> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("malformed long int");
    }
    if digits.len() > crate::MAX_INT_DIGITS {
        return Err("long int exceeds the digit limit");
    }
    if (digits[0] == b'0' && digits.len() > 1) || text == b"-0" {
        return Err("non-canonical long int");
    }
    Ok(())
}
