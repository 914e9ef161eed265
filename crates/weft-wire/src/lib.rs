//! `weft-wire`: the byte format spoken between weft gateways (docs/wire.md).
//!
//! **Owns**: the 9-byte message header and message codes
//! ([`pack_message`], [`unpack_header`]), and the serializer that turns a
//! [`Value`] into execnet-2.1-compatible bytes and back ([`encode`],
//! [`decode`]). Its output is byte-identical to the pure-Python twin
//! `python/weft/_bootstrap/wire.py`; both are checked against the shared
//! vectors in `tests/vectors/wire.json`.
//!
//! **Must not**: depend on Python or PyO3 (the binding lives in `weft-py`),
//! do any I/O, know about channels beyond carrying their numeric id, or ever
//! evaluate what it decodes. A decoder must never panic, recurse without
//! bound, or allocate more than a small constant factor of its input,
//! whatever the input: every malformed input is a [`LoadError`].
//!
//! Limits (the same in both implementations): containers nest at most
//! [`MAX_DEPTH`] deep, long ints have at most [`MAX_INT_DIGITS`] digits, every
//! length must fit in the bytes that remain, a NEWLIST may announce only
//! as many items as the remaining bytes could hold, and one message makes at
//! most [`MAX_VALUES`] values, [`MAX_CONTAINERS`] containers and
//! [`MAX_CHANNELS`] channel references.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod encode;
mod error;
mod frame;
pub mod opcode;
mod value;

pub use decode::{decode, decode_into, decode_with, Builder, LoadOptions};
pub use encode::{encode, encode_append, encode_versioned, Emitter};
pub use error::{DataFormatError, DumpError, LoadError};
pub use frame::{
    message_name, pack_header, pack_message, unpack_header, unpack_header_limited, Header,
    CHANNEL_CLOSE, CHANNEL_CLOSE_ERROR, CHANNEL_DATA, CHANNEL_EXEC, CHANNEL_LAST_MESSAGE,
    GATEWAY_TERMINATE, HEADER_SIZE, RECONFIGURE, STATUS,
};
pub use value::Value;

/// Deepest container nesting accepted by the encoder and the decoder; a
/// top-level container has depth 1, a scalar depth 0.
pub const MAX_DEPTH: usize = 256;

/// Most decimal digits (sign excluded) in a LONGINT; CPython's default
/// `int_max_str_digits`, so the Python twin can always convert them.
pub const MAX_INT_DIGITS: usize = 4300;

/// Most values one message may make: every opcode except SETITEM and STOP
/// makes one (a scalar, a container, a channel reference); a list item's
/// index stops counting once its SETITEM has stored the item. Checked as the
/// decoder meets them, so a message of one-byte opcodes cannot make more
/// objects than this, whatever its length (docs/wire.md, "Resource limits").
pub const MAX_VALUES: usize = 1_000_000;

/// Most containers (dict, list, tuple, set, frozenset) one message may make.
pub const MAX_CONTAINERS: usize = 250_000;

/// Most channel references one message may carry (each makes a Channel with
/// its queue and events on the Python side).
pub const MAX_CHANNELS: usize = 1_000;

/// The version byte that [`encode_versioned`] prepends, as `execnet.dumps`.
pub const DUMPFORMAT_VERSION: u8 = 2;
