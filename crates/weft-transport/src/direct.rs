//! Direct read: a thread waiting for an item of one channel reads the
//! gateway's frames itself instead of waiting for the receiver thread to
//! hand the item over (docs/gateways.md). The loop below is the whole
//! protocol on the waiting thread's side; [`crate::role::Role`] says who
//! may read, [`crate::wake::Event`] is the queue's wake-up.
//!
//! What is not this crate's (decoding and routing frames, the queue's
//! items, releasing the GIL, signal handlers) the caller provides through
//! [`Host`]; `weft-py/src/transport.rs` is that caller for Python.
//!
//! The hand-offs, each of which must not lose a wake-up:
//! * the role: taken from the receiver (kicked out of its poll) or from
//!   nobody; given back when the wait ends however it ends ([`read_for`]
//!   releases it on every return and on a panic), and handed to the
//!   receiver at once at the first frame only it may dispatch, or at the
//!   end of the stream;
//! * an item put by another thread while this one waits: the putter sets
//!   the queue's event, then, if the waiter has said it is blocked
//!   ([`WaiterFlag`]), pokes the role; the waiter says so before its last
//!   look at the event, so at least one sees the other (loom model in
//!   `loom_tests`).

use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::role::{Acquire, Holder, Ready, Role};
use crate::wake::{Event, WaiterFlag};
use crate::FdReader;

/// How [`Host::route`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// No complete frame is buffered.
    NeedBytes,
    /// A batch went into queues; more frames may be buffered.
    Full,
    /// The next frame (left in the buffer) is not one the waiting thread may
    /// route: the receiver thread dispatches it.
    Stop,
}

/// What a direct read ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Direct<T> {
    /// The item the thread waited for.
    Item(T),
    /// The deadline passed.
    TimedOut,
    /// Wait the ordinary way (the receiver thread reads).
    Fallback,
}

/// What the waiting thread's side provides.
pub trait Host {
    /// A queue item.
    type Item;
    /// What a signal handler can raise.
    type Error;
    /// The next item of the queue waited for.
    fn pop(&self) -> Option<Self::Item>;
    /// Whether that queue has items.
    fn has_items(&self) -> bool;
    /// That queue's wake-up, set by every put.
    fn ready(&self) -> &Event;
    /// That queue's flag saying this thread is blocked for it (a put then
    /// pokes the role's holder out of its poll).
    fn waiter(&self) -> &WaiterFlag;
    /// Route the buffered frames into their queues (up to a batch), stop
    /// before the first one that the receiver thread must dispatch.
    fn route(&self, r: &mut FdReader) -> Routed;
    /// Run `f`, which blocks, with the GIL released.
    fn blocking<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R;
    /// Run pending signal handlers (after `EINTR`, and between slices in
    /// the main thread).
    fn check_signals(&self) -> Result<(), Self::Error>;
    /// Whether this is the process's main thread (its waits end every
    /// slice so that signal handlers run).
    fn is_main_thread(&self) -> bool;
}

/// Drops the read role and the direct-waiter flag of a waiting thread.
struct GiveBack<'a, H: Host>(&'a Role, &'a H, u64);

impl<H: Host> Drop for GiveBack<'_, H> {
    fn drop(&mut self) {
        self.1.waiter().lower();
        self.0.release(Holder::User(self.2), false);
    }
}

fn lock(m: &Mutex<FdReader>) -> MutexGuard<'_, FdReader> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read for the waiting thread `me` (a thread id, never 0) until an item
/// is in its queue, `deadline` passes, or the receiver thread must take
/// over. `reader` is the descriptor's reader, touched only by the role's
/// holder; `slice` bounds each blocking wait (signal handlers run between
/// slices in the main thread). The role is given back on every return.
pub fn read_for<H: Host>(
    role: &Role,
    reader: &Mutex<FdReader>,
    host: &H,
    deadline: Option<Instant>,
    me: u64,
    slice: Duration,
) -> Result<Direct<H::Item>, H::Error> {
    // given back however this ends, a panic included: a role kept by a
    // thread that left would starve the receiver thread
    let _giveback = GiveBack(role, host, me);
    let main = host.is_main_thread();
    loop {
        host.ready().clear();
        if let Some(x) = host.pop() {
            return Ok(Direct::Item(x));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(Direct::TimedOut);
        }
        let slice_end = now + slice;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        if role.holder() != Holder::User(me) {
            host.waiter().raise();
            let ready = host.ready();
            let got = host.blocking(|| role.user_acquire(me, &|| ready.is_set(), until));
            host.waiter().lower();
            match got {
                Acquire::Got => {}
                Acquire::Ready => continue,
                Acquire::Refused => return Ok(Direct::Fallback),
                Acquire::Timeout => {
                    if main {
                        host.check_signals()?;
                    }
                    continue;
                }
            }
        }
        let mut r = lock(reader);
        match host.route(&mut r) {
            Routed::Stop => {
                drop(r);
                role.release(Holder::User(me), true);
                return Ok(Direct::Fallback);
            }
            Routed::Full => continue,
            Routed::NeedBytes => {}
        }
        if host.has_items() {
            continue;
        }
        if !host.waiter().announce(host.ready()) {
            continue; // put by another thread since the look above
        }
        let fd = r.fd();
        let inner = &mut *r;
        let polled: io::Result<Option<usize>> = host.blocking(move || {
            match role.poll(fd, Some(until.saturating_duration_since(Instant::now())))? {
                Ready::Data => inner.fill().map(Some),
                Ready::Kick | Ready::Timeout => Ok(None),
            }
        });
        host.waiter().lower();
        match polled {
            Ok(Some(n)) if n > 0 => {}
            Ok(None) => {
                if role.is_closed() {
                    // the receiver has finished (and closes the fd next)
                    return Ok(Direct::Fallback);
                }
                if main {
                    host.check_signals()?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => host.check_signals()?,
            Ok(Some(_)) | Err(_) => {
                // end of stream or an error: the receiver thread meets it
                // too, and ends the channels
                drop(r);
                role.release(Holder::User(me), true);
                return Ok(Direct::Fallback);
            }
        }
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
