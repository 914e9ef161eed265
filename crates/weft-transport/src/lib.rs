//! `weft-transport`: whole gateway frames in and out of file descriptors.
//!
//! **Owns**: the receive buffer that turns a byte stream into complete frames
//! ([`FrameBuf`]: header checks, the frame-size limit, bounded growth), and
//! the two system-call loops a gateway needs ([`read_some`], [`write_from`]):
//! blocking or non-blocking descriptors (pipes, sockets), `EAGAIN` waited out
//! with `poll`, `EINTR` handed back to the caller so that it can run signal
//! handlers. [`FdReader`] is the two together. The direct-read protocol:
//! [`role::Role`] says which thread may read (the receiver thread, or a
//! thread waiting for an item), [`direct::read_for`] is the waiting thread's
//! read loop, [`wake`] the queues' wake-up events and the receiver thread's
//! deferred wake-ups. Their primitives come through one module (`sync`) so
//! that loom checks them (`RUSTFLAGS="--cfg loom" cargo test -p
//! weft-transport --release loom`).
//!
//! **Must not**: depend on Python (the binding is `weft-py/src/transport.rs`,
//! which releases the GIL around the blocking calls), own or close the
//! descriptors it is given, or decode payloads (that is `weft-wire`).
//!
//! Memory: a header announcing more than `max_frame` payload bytes is an
//! error, and the buffer grows by at most [`GROW_CHUNK`] beyond the bytes
//! that have actually arrived, so a lying peer cannot make us allocate memory
//! it did not send.

#![warn(missing_docs)]

use std::io;
use std::ops::Range;
use std::os::fd::RawFd;

pub use weft_wire::{Header, LoadError, HEADER_SIZE};

#[cfg(not(all(test, loom)))]
pub mod direct;
pub mod role;
mod sync;
pub mod wake;

#[cfg(all(test, loom))]
mod loom_tests;

/// The buffer is at least this big: one `read` takes up to this much.
pub const MIN_CAPACITY: usize = 256 * 1024;
/// Most the buffer grows ahead of the bytes received (for a large frame).
pub const GROW_CHUNK: usize = 1 << 20;
/// An empty buffer bigger than this shrinks back to [`MIN_CAPACITY`].
pub const SHRINK_ABOVE: usize = 16 << 20;
/// POSIX guarantees at least this many iovecs per `writev` (Linux: 1024).
const IOV_MAX: usize = 1024;

/// Received bytes not yet handed out as frames.
///
/// `buf[start..end]` holds received bytes; `buf[end..]` is room for more.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: u32,
}

impl FrameBuf {
    /// An empty buffer refusing frames with more than `max_frame` payload bytes.
    pub fn new(max_frame: u32) -> Self {
        FrameBuf {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// Bytes received and not yet returned as part of a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Bytes the frame at the front needs in all (header and payload), if
    /// its header has arrived and is valid; else [`HEADER_SIZE`].
    fn needed(&self) -> usize {
        match self.header() {
            Some(Ok(h)) => HEADER_SIZE + h.length as usize,
            _ => HEADER_SIZE,
        }
    }

    fn header(&self) -> Option<Result<Header, LoadError>> {
        let data = &self.buf[self.start..self.end];
        if data.len() < HEADER_SIZE {
            return None;
        }
        Some(weft_wire::unpack_header_limited(
            &data[..HEADER_SIZE],
            Some(self.max_frame),
        ))
    }

    /// The next complete frame: its header and the range of its payload,
    /// valid for [`FrameBuf::slice`] until the next [`FrameBuf::spare`].
    /// `Ok(None)` means more bytes are needed. A bad header is an error
    /// every time it is asked for (the bytes stay where they are).
    pub fn next_frame(&mut self) -> Result<Option<(Header, Range<usize>)>, LoadError> {
        let h = match self.header() {
            None => return Ok(None),
            Some(h) => h?,
        };
        let total = HEADER_SIZE + h.length as usize;
        if self.buffered() < total {
            return Ok(None);
        }
        let payload = self.start + HEADER_SIZE..self.start + total;
        self.start += total;
        Ok(Some((h, payload)))
    }

    /// Where the next frame starts, for [`FrameBuf::rewind`].
    pub fn mark(&self) -> usize {
        self.start
    }

    /// Put back the frames handed out since `mark` was taken (with no
    /// [`FrameBuf::spare`] in between): they come out again, unchanged.
    pub fn rewind(&mut self, mark: usize) {
        assert!(mark <= self.start, "rewind past the frames handed out");
        self.start = mark;
    }

    /// The bytes of a payload range returned by [`FrameBuf::next_frame`].
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// For an EOF: `(expected, got)` bytes of the incomplete frame at the
    /// front, or None if the buffer ends at a frame boundary.
    pub fn incomplete(&self) -> Option<(usize, usize)> {
        match self.buffered() {
            0 => None,
            got => Some((self.needed(), got)),
        }
    }

    /// Room to receive into (never empty). Moves the buffered bytes to the
    /// front when needed and grows the buffer towards the size of the frame
    /// at the front, by at most [`GROW_CHUNK`] beyond the bytes received.
    pub fn spare(&mut self) -> &mut [u8] {
        let have = self.buffered();
        if have == 0 {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = Vec::new();
            }
        }
        let target = self
            .needed()
            .min(have + GROW_CHUNK)
            .max(MIN_CAPACITY)
            .max(have + 1);
        if self.buf.len() - self.start < target {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = have;
            }
            if self.buf.len() < target {
                self.buf.resize(target, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Record that `n` bytes were written at the start of [`FrameBuf::spare`].
    pub fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "commit past the spare room");
        self.end += n;
    }

    /// Take exactly `n` buffered bytes (for callers that read raw bytes
    /// between frames); None if fewer are buffered.
    pub fn take(&mut self, n: usize) -> Option<Range<usize>> {
        if self.buffered() < n {
            return None;
        }
        let r = self.start..self.start + n;
        self.start += n;
        Some(r)
    }
}

fn wait_for(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `p` is a valid pollfd for the duration of the call and we pass
    // a count of exactly one.
    let r = unsafe { libc::poll(&mut p, 1, -1) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One `read` into `buf`: the number of bytes read (0 at end of stream).
/// A non-blocking descriptor is waited for with `poll`; `EINTR` is returned
/// as [`io::ErrorKind::Interrupted`] for the caller to handle signals.
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes that
        // we borrow mutably for the duration of the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            wait_for(fd, libc::POLLIN)?;
            continue;
        }
        return Err(err);
    }
}

/// The iovecs of the bytes of `parts` after the first `skip` (borrowing
/// from `parts`: valid while it is).
fn iovecs_after(parts: &[&[u8]], skip: usize) -> Vec<libc::iovec> {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len());
    let mut skip = skip;
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        let rest = &part[skip..];
        skip = 0;
        iov.push(libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        });
    }
    iov
}

/// One `writev` of the bytes of `parts` after the first `skip`: how many
/// were written (at least 1 unless nothing was left). A non-blocking
/// descriptor is waited for with `poll`; `EINTR` is returned as
/// [`io::ErrorKind::Interrupted`].
pub fn write_from(fd: RawFd, parts: &[&[u8]], skip: usize) -> io::Result<usize> {
    let iov = iovecs_after(parts, skip);
    if iov.is_empty() {
        return Ok(0);
    }
    let count = iov.len().min(IOV_MAX) as libc::c_int;
    loop {
        // SAFETY: every iovec points into a slice of `parts`, borrowed for
        // the whole call, and `count` is at most `iov.len()`; writev only
        // reads through them.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), count) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            wait_for(fd, libc::POLLOUT)?;
            continue;
        }
        return Err(err);
    }
}

/// Like [`write_from`], but never waits: a descriptor that takes no more
/// bytes now is an [`io::ErrorKind::WouldBlock`] error (wait with
/// [`wait_writable`]). With `socket`, the bytes go out with `sendmsg` and
/// `MSG_DONTWAIT`, so a blocking socket (whose file description a reader
/// shares) need not be switched to non-blocking; any other descriptor must
/// be non-blocking for this call not to block. `EINTR` is returned as
/// [`io::ErrorKind::Interrupted`].
pub fn try_write_from(fd: RawFd, parts: &[&[u8]], skip: usize, socket: bool) -> io::Result<usize> {
    let iov = iovecs_after(parts, skip);
    if iov.is_empty() {
        return Ok(0);
    }
    let count = iov.len().min(IOV_MAX);
    let n = if socket {
        // SAFETY: an all-zero msghdr is a valid empty message (no name, no
        // control data); msg_iov points to `count` iovecs of `iov`, each into
        // a slice of `parts` borrowed for the whole call, and sendmsg only
        // reads through them.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = count as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        }
    } else {
        // SAFETY: as in `write_from`: every iovec points into a slice of
        // `parts`, borrowed for the whole call, and `count <= iov.len()`.
        unsafe { libc::writev(fd, iov.as_ptr(), count as libc::c_int) }
    };
    if n >= 0 {
        return Ok(n as usize);
    }
    Err(io::Error::last_os_error())
}

/// Wait until `fd` takes more bytes (or has an error or hang-up to report),
/// at most `timeout` (None: no limit): true if it is ready, false on
/// timeout. `EINTR` is returned as [`io::ErrorKind::Interrupted`].
pub fn wait_writable(fd: RawFd, timeout: Option<std::time::Duration>) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = match timeout {
        None => -1,
        Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `p` is a valid pollfd for the duration of the call and we pass
    // a count of exactly one.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r > 0)
}

/// A [`FrameBuf`] fed from one descriptor (which it does not own).
#[derive(Debug)]
pub struct FdReader {
    fd: RawFd,
    /// The frames received so far.
    pub buf: FrameBuf,
}

impl FdReader {
    /// Read frames from `fd`, refusing payloads above `max_frame` bytes.
    pub fn new(fd: RawFd, max_frame: u32) -> Self {
        FdReader {
            fd,
            buf: FrameBuf::new(max_frame),
        }
    }

    /// The descriptor read from.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// One `read` into the buffer: bytes read, 0 at end of stream.
    pub fn fill(&mut self) -> io::Result<usize> {
        let n = read_some(self.fd, self.buf.spare())?;
        self.buf.commit(n);
        Ok(n)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
