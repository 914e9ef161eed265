//! Serializer opcodes, numbered as in execnet 2.1 (one ASCII byte each).
//!
//! Operands are big-endian; `n:i32` is a signed 4-byte count or length.

/// `@ n:i32`: pop `n` values, push a tuple of them.
pub const BUILDTUPLE: u8 = b'@';
/// `A n:i32 raw[n]`: bytes.
pub const BYTES: u8 = b'A';
/// `B id:i32`: a channel reference.
pub const CHANNEL: u8 = b'B';
/// `C`: False.
pub const FALSE: u8 = b'C';
/// `D f64`: float.
pub const FLOAT: u8 = b'D';
/// `E n:i32`: pop `n` values, push a frozenset of them.
pub const FROZENSET: u8 = b'E';
/// `F i32`: int in the signed 32-bit range.
pub const INT: u8 = b'F';
/// `G i32`: Python 2 long; decoded like INT, never emitted.
pub const LONG: u8 = b'G';
/// `H n:i32 ascii[n]`: int as decimal text.
pub const LONGINT: u8 = b'H';
/// `I n:i32 ascii[n]`: Python 2 long; decoded like LONGINT, never emitted.
pub const LONGLONG: u8 = b'I';
/// `J`: push an empty dict.
pub const NEWDICT: u8 = b'J';
/// `K n:i32`: push a list that the next `n` SETITEMs (indices 0..n) fill.
pub const NEWLIST: u8 = b'K';
/// `L`: None.
pub const NONE: u8 = b'L';
/// `M n:i32 raw[n]`: Python 2 str; latin-1 text or bytes by strconfig.
pub const PY2STRING: u8 = b'M';
/// `N n:i32 utf8[n]`: str.
pub const PY3STRING: u8 = b'N';
/// `O n:i32`: pop `n` values, push a set of them.
pub const SET: u8 = b'O';
/// `P`: pop value, pop key, store into the dict or list now on top.
pub const SETITEM: u8 = b'P';
/// `Q`: end of the value; exactly one value must be on the stack.
pub const STOP: u8 = b'Q';
/// `R`: True.
pub const TRUE: u8 = b'R';
/// `S n:i32 utf8[n]`: Python 2 unicode; decoded like PY3STRING.
pub const UNICODE: u8 = b'S';
/// `T f64 f64`: complex (real, imag).
pub const COMPLEX: u8 = b'T';
