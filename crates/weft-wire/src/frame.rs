//! Message framing: `msgcode:i8 channel:i32 length:i32`, big-endian, then
//! `length` payload bytes (execnet's `struct.pack("!bii", ...)`).

use crate::error::{DumpError, LoadError};

/// Size of a message header in bytes.
pub const HEADER_SIZE: usize = 9;

/// Ask the peer for gateway status; the answer comes on the given channel.
pub const STATUS: u8 = 0;
/// Change the string configuration of the gateway (channel 0) or a channel.
pub const RECONFIGURE: u8 = 1;
/// Shut the gateway down.
pub const GATEWAY_TERMINATE: u8 = 2;
/// Run source code on a new channel.
pub const CHANNEL_EXEC: u8 = 3;
/// One serialized item for a channel.
pub const CHANNEL_DATA: u8 = 4;
/// The channel was closed normally.
pub const CHANNEL_CLOSE: u8 = 5;
/// The channel was closed with an error text as payload.
pub const CHANNEL_CLOSE_ERROR: u8 = 6;
/// The sender will send no more on this channel.
pub const CHANNEL_LAST_MESSAGE: u8 = 7;

const NAMES: [&str; 8] = [
    "STATUS",
    "RECONFIGURE",
    "GATEWAY_TERMINATE",
    "CHANNEL_EXEC",
    "CHANNEL_DATA",
    "CHANNEL_CLOSE",
    "CHANNEL_CLOSE_ERROR",
    "CHANNEL_LAST_MESSAGE",
];

/// The execnet name of a message code, or `None` for an unknown code.
pub fn message_name(msgcode: u8) -> Option<&'static str> {
    NAMES.get(usize::from(msgcode)).copied()
}

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// One of [`STATUS`] ..= [`CHANNEL_LAST_MESSAGE`].
    pub msgcode: u8,
    /// Channel id, 0..=2^31-1.
    pub channel_id: u32,
    /// Payload length in bytes, 0..=2^31-1.
    pub length: u32,
}

const I32_MAX: u32 = i32::MAX as u32;

/// Build the 9-byte header for a message.
pub fn pack_header(msgcode: u8, channel_id: u32, length: usize) -> Result<[u8; HEADER_SIZE], DumpError> {
    if message_name(msgcode).is_none() {
        return Err(DumpError::new(format!("unknown message code {msgcode} (known: 0..7)")));
    }
    if channel_id > I32_MAX {
        return Err(DumpError::new(format!("channel id {channel_id} is not in 0..2**31-1")));
    }
    if length > I32_MAX as usize {
        return Err(DumpError::new(format!("payload of {length} bytes exceeds 2**31-1")));
    }
    let mut h = [0u8; HEADER_SIZE];
    h[0] = msgcode;
    h[1..5].copy_from_slice(&channel_id.to_be_bytes());
    h[5..9].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(h)
}

/// Header followed by the payload, ready to write.
pub fn pack_message(msgcode: u8, channel_id: u32, payload: &[u8]) -> Result<Vec<u8>, DumpError> {
    let header = pack_header(msgcode, channel_id, payload.len())?;
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Parse a header; `header` must be exactly [`HEADER_SIZE`] bytes.
pub fn unpack_header(header: &[u8]) -> Result<Header, LoadError> {
    unpack_header_limited(header, None)
}

/// Like [`unpack_header`], also refusing a payload longer than `max_length`.
pub fn unpack_header_limited(header: &[u8], max_length: Option<u32>) -> Result<Header, LoadError> {
    let h: &[u8; HEADER_SIZE] = header.try_into().map_err(|_| {
        LoadError::new(format!("message header must be {HEADER_SIZE} bytes, got {}", header.len()), 0)
    })?;
    let code = h[0] as i8;
    let channel = i32::from_be_bytes([h[1], h[2], h[3], h[4]]);
    let length = i32::from_be_bytes([h[5], h[6], h[7], h[8]]);
    if code < 0 || message_name(code as u8).is_none() {
        return Err(LoadError::new(format!("unknown message code {code} in header"), 0));
    }
    if channel < 0 {
        return Err(LoadError::new(format!("negative channel id {channel} in header"), 1));
    }
    if length < 0 {
        return Err(LoadError::new(format!("negative payload length {length} in header"), 5));
    }
    if let Some(max) = max_length {
        if length as u32 > max {
            return Err(LoadError::new(format!("payload length {length} exceeds the limit of {max}"), 5));
        }
    }
    Ok(Header { msgcode: code as u8, channel_id: channel as u32, length: length as u32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = pack_message(CHANNEL_DATA, 7, b"xyz").unwrap();
        assert_eq!(&m[..], b"\x04\x00\x00\x00\x07\x00\x00\x00\x03xyz");
        let h = unpack_header(&m[..HEADER_SIZE]).unwrap();
        assert_eq!(h, Header { msgcode: CHANNEL_DATA, channel_id: 7, length: 3 });
        assert_eq!(message_name(h.msgcode), Some("CHANNEL_DATA"));
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(unpack_header(b"\x04\x00\x00\x00").is_err());
        assert!(unpack_header(b"\x08\x00\x00\x00\x01\x00\x00\x00\x00").is_err());
        assert!(unpack_header(b"\xff\x00\x00\x00\x01\x00\x00\x00\x00").is_err());
        assert!(unpack_header(b"\x04\x80\x00\x00\x01\x00\x00\x00\x00").is_err());
        assert!(unpack_header(b"\x04\x00\x00\x00\x01\xff\xff\xff\xff").is_err());
        let h = b"\x04\x00\x00\x00\x01\x00\x00\x01\x00";
        assert!(unpack_header_limited(h, Some(255)).is_err());
        assert_eq!(unpack_header_limited(h, Some(256)).unwrap().length, 256);
    }

    #[test]
    fn rejects_bad_packs() {
        assert!(pack_message(8, 0, b"").is_err());
        assert!(pack_message(STATUS, 1 << 31, b"").is_err());
        assert!(pack_header(STATUS, 0, 1 << 31).is_err());
    }
}
