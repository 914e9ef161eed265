//! `weft._weft.FrameReader`, `FrameWriter`, `frame_dumps`: the gateway transport
//! of crate `weft-transport` for `weft._bootstrap.core` (docs/gateways.md).
//! Every blocking system call runs with the GIL released; a thread touches
//! the GIL once per batch of received frames and once per sent frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyEOFError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use weft_transport::role::{Holder, Ready, Role};
use weft_transport::{try_write_from, wait_writable, FdReader, HEADER_SIZE};
use weft_wire::{opcode, Emitter};

use crate::event::{in_main_thread, take_deferred, SIGNAL_SLICE};
use weft_transport::wake::stop_deferring;
use crate::queue::PyItemQueue;
use crate::wire::{decode_plain, dump_error, dump_into, load_error};

/// Most frames (and about most payload bytes) one `read_frames` returns.
const BATCH_FRAMES: usize = 512;
const BATCH_BYTES: usize = 4 << 20;

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string()))
}

/// The result of a blocking call made with the GIL released, for Python:
/// `Some(value)`; None after `EINTR`, once the signal handlers have run (the
/// caller tries again); OSError for any other failure.
fn retry_or_raise<T>(py: Python<'_>, r: std::io::Result<T>) -> PyResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            py.check_signals()?;
            Ok(None)
        }
        Err(e) => Err(os_error(e)),
    }
}

/// Reads whole frames from a file descriptor it does not own.
///
/// Routes: `route(cid, queue)` names the `ItemQueue` of a channel that has
/// no callback. A CHANNEL_DATA frame for a routed channel whose payload
/// decodes without help (no channel references, no error) is put straight
/// into that queue, without Python. Everything else is returned by
/// `read_frames` for `core` to dispatch; once one frame of a batch is
/// returned, so are all after it, so frames are dispatched in arrival order.
///
/// Direct read: a thread waiting in `ItemQueue.get` on a queue attached to
/// this reader takes the read role (crate `weft-transport`, `role`) and
/// routes frames itself; at the first frame it may not dispatch, it hands
/// the role (and that frame, still in the buffer) back to the receiver
/// thread, the one that calls `read_frames`.
#[pyclass(module = "weft._weft", name = "FrameReader", frozen)]
pub struct PyFrameReader {
    /// Locked only by the holder of `role`, so never contended.
    inner: Mutex<FdReader>,
    routes: Mutex<HashMap<u32, Py<PyItemQueue>>>,
    role: Role,
    fd: i32,
    /// The thread that calls `read_frames` (0 before its first call).
    receiver: AtomicU64,
    /// Set when the receiver is a tasklet (the tasklet exec model): it parks
    /// on the descriptor instead of blocking its thread, and no other thread
    /// reads for itself (it could not kick a parked tasklet off the role).
    parking: AtomicBool,
    /// Items that waiting threads got by reading for themselves.
    direct_receives: AtomicU64,
}

pub(crate) use weft_transport::direct::Direct;
use weft_transport::direct::{Host, Routed};

/// The Python side of a waiting thread's direct read: its queue, the
/// routing of frames (decoding needs the GIL), the GIL and signals.
struct PyHost<'a, 'py> {
    py: Python<'py>,
    reader: &'a PyFrameReader,
    q: &'a PyItemQueue,
}

impl Host for PyHost<'_, '_> {
    type Item = Py<PyAny>;
    type Error = PyErr;
    fn pop(&self) -> Option<Py<PyAny>> {
        self.q.pop()
    }
    fn has_items(&self) -> bool {
        self.q.qsize() > 0
    }
    fn ready(&self) -> &weft_transport::wake::Event {
        self.q.ready()
    }
    fn waiter(&self) -> &weft_transport::wake::WaiterFlag {
        self.q.waiter()
    }
    fn route(&self, r: &mut FdReader) -> Routed {
        self.reader.route_buffered(self.py, r)
    }
    fn blocking<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        self.py.detach(f)
    }
    fn check_signals(&self) -> PyResult<()> {
        self.py.check_signals()
    }
    fn is_main_thread(&self) -> bool {
        in_main_thread()
    }
}

fn thread_id() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() as u64 }
}

impl PyFrameReader {
    fn reader(&self) -> MutexGuard<'_, FdReader> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<u32, Py<PyItemQueue>>> {
        // never held across a call into Python (a finalizer could route)
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put the buffered plain items of routed channels into their queues,
    /// up to one batch; stop before the first frame that is not one.
    fn route_buffered(&self, py: Python<'_>, r: &mut FdReader) -> Routed {
        let (mut frames, mut bytes) = (0, 0);
        while frames < BATCH_FRAMES && bytes < BATCH_BYTES {
            let mark = r.buf.mark();
            let (h, range) = match r.buf.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Routed::NeedBytes,
                Err(_) => return Routed::Stop, // read_frames reports it
            };
            if h.msgcode == weft_wire::CHANNEL_DATA && self.routes().contains_key(&h.channel_id) {
                if let Some(item) = decode_plain(py, r.buf.slice(range.clone())) {
                    // Look again: decoding can run the GC, whose finalizers
                    // can let another thread unroute the channel (setcallback
                    // drains the queue first). The push runs no Python.
                    let routes = self.routes();
                    if let Some(queue) = routes.get(&h.channel_id) {
                        queue.get().push(item.unbind());
                        frames += 1;
                        bytes += range.len();
                        continue;
                    }
                }
            }
            r.buf.rewind(mark);
            return Routed::Stop;
        }
        Routed::Full
    }

    /// Wake a thread blocked in a direct read (an item was put for it).
    pub(crate) fn poke(&self) {
        self.role.poke();
    }

    /// Whether a thread waiting for an item may read for itself now.
    pub(crate) fn direct_allowed(&self) -> bool {
        let receiver = self.receiver.load(Ordering::Relaxed);
        receiver != 0 && receiver != thread_id() && !self.role.is_closed() && !self.parking.load(Ordering::Relaxed)
    }

    /// Read for `q` (a queue attached to this reader) until an item is in
    /// it, `deadline` passes, or the receiver thread must take over
    /// (`weft_transport::direct::read_for`).
    pub(crate) fn read_for(
        &self,
        py: Python<'_>,
        q: &PyItemQueue,
        deadline: Option<Instant>,
    ) -> PyResult<Direct<Py<PyAny>>> {
        let host = PyHost { py, reader: self, q };
        let outcome = weft_transport::direct::read_for(&self.role, &self.inner, &host, deadline, thread_id(), SIGNAL_SLICE);
        if let Ok(Direct::Item(_)) = outcome {
            self.direct_receives.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Append the buffered frames (up to a batch) to `out` as tuples.
    fn collect_frames(&self, py: Python<'_>, r: &mut FdReader, out: &Bound<'_, PyList>) -> PyResult<()> {
        let mut bytes = 0;
        while out.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            let (h, range) = match r.buf.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                // the good frames first; the error comes again next call
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(load_error(py, e.to_string())),
            };
            bytes += range.len();
            let payload = PyBytes::new(py, r.buf.slice(range));
            out.append(PyTuple::new(
                py,
                [
                    h.msgcode.into_pyobject(py)?.into_any(),
                    h.channel_id.into_pyobject(py)?.into_any(),
                    payload.into_any(),
                ],
            )?)?;
        }
        Ok(())
    }
}

impl PyFrameReader {
    /// `read_frames` for a receiver that is a tasklet: when no whole frame
    /// is buffered it parks on the descriptor (the other tasklets run, and
    /// the idle scheduler polls it) instead of blocking the thread, then
    /// reads what has arrived. The role stays the receiver's: `parking`
    /// keeps other threads from reading for themselves.
    fn read_frames_parking<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // No wake-ups held back here: the thread is every tasklet's, and a
        // wake-up another tasklet sets must not wait for this one's next read.
        stop_deferring().wake();
        loop {
            {
                let mut reader = self.reader();
                match self.route_buffered(py, &mut reader) {
                    Routed::Full => continue,
                    Routed::Stop => {
                        let out = PyList::empty(py);
                        self.collect_frames(py, &mut reader, &out)?;
                        return Ok(out);
                    }
                    Routed::NeedBytes => {}
                }
                // Data already there (the usual case right after a wake-up):
                // read it without giving way. The descriptor is readable, so
                // the read does not block.
                if crate::stackless::io::readable_now(self.fd) {
                    if let Some(0) = retry_or_raise(py, reader.fill())? {
                        return Err(eof_error(&reader));
                    }
                    continue;
                }
            }
            // The guard is dropped: the other tasklets run while this one
            // parks, and none of them may find the reader locked.
            crate::stackless::io::listen(py, self.fd, None)?;
        }
    }
}

/// The EOFError for the end of the stream, saying if it ended inside a frame.
fn eof_error(reader: &FdReader) -> PyErr {
    PyEOFError::new_err(match reader.buf.incomplete() {
        Some((want, got)) => format!("connection closed inside a frame: expected {want} bytes, got {got}"),
        None => "connection closed".to_string(),
    })
}

/// How long the receiver thread leaves a free read role to the threads
/// that waited for items before it reads again itself.
const GRACE: Duration = Duration::from_millis(2);

#[pymethods]
impl PyFrameReader {
    #[new]
    fn new(fd: i32, max_frame: u32) -> PyResult<Self> {
        Ok(PyFrameReader {
            inner: Mutex::new(FdReader::new(fd, max_frame)),
            routes: Mutex::new(HashMap::new()),
            role: Role::new().map_err(os_error)?,
            fd,
            receiver: AtomicU64::new(0),
            parking: AtomicBool::new(false),
            direct_receives: AtomicU64::new(0),
        })
    }

    /// Put CHANNEL_DATA items for channel `cid` into `queue` from now on.
    fn route(&self, cid: u32, queue: Py<PyItemQueue>) {
        let old = self.routes().insert(cid, queue);
        drop(old);
    }

    /// Stop routing channel `cid` (no-op if it is not routed); with `queue`,
    /// only if the route still goes to that queue (a channel object being
    /// finalized must not unroute a newer channel with the same id).
    #[pyo3(signature = (cid, queue = None))]
    fn unroute(&self, cid: u32, queue: Option<Bound<'_, PyAny>>) {
        let mut routes = self.routes();
        let same = match (&queue, routes.get(&cid)) {
            (Some(q), Some(r)) => q.is(r),
            _ => true,
        };
        let old = if same { routes.remove(&cid) } else { None };
        drop(routes);
        drop(old);
    }

    /// Stop routing every channel.
    fn unroute_all(&self) {
        let old = std::mem::take(&mut *self.routes());
        drop(old);
    }

    /// How many items waiting threads got by reading for themselves.
    #[getter]
    fn direct_receives(&self) -> u64 {
        self.direct_receives.load(Ordering::Relaxed)
    }

    /// The receiver thread has finished: waiting threads stop reading.
    fn close_role(&self) {
        self.role.close();
    }

    /// The next frames: a non-empty list of `(msgcode, channelid, payload)`.
    /// Blocks (GIL released) until at least one whole frame has arrived.
    /// EOFError at the end of the stream (its text says if it ended inside a
    /// frame), LoadError for a bad header (after the good frames before it).
    /// The calling thread is the receiver thread from now on.
    fn read_frames<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.receiver.store(thread_id(), Ordering::Relaxed);
        if crate::stackless::io::can_park(py) {
            self.parking.store(true, Ordering::Relaxed);
            return self.read_frames_parking(py);
        }
        loop {
            if self.role.holder() != Holder::Receiver {
                // wake-ups held back since the last call (docs/gateways.md)
                let mut held = take_deferred();
                let role = &self.role;
                py.detach(move || {
                    held.wake();
                    while !role.receiver_acquire(GRACE, Instant::now() + Duration::from_secs(60)) {}
                });
            }
            let mut reader = self.reader();
            match self.route_buffered(py, &mut reader) {
                Routed::Full => {
                    // wake the waiters of that batch, then take the next
                    take_deferred().wake();
                    continue;
                }
                Routed::Stop => {
                    let out = PyList::empty(py);
                    self.collect_frames(py, &mut reader, &out)?;
                    return Ok(out);
                }
                Routed::NeedBytes => {}
            }
            if self.role.receiver_yield_if_wanted() {
                continue;
            }
            let fd = self.fd;
            let role = &self.role;
            let inner = &mut *reader;
            let mut held = take_deferred();
            let polled = py.detach(move || {
                held.wake();
                match role.poll(fd, None)? {
                    Ready::Data => inner.fill().map(Some),
                    Ready::Kick | Ready::Timeout => Ok(None),
                }
            });
            // None: kicked (a waiting thread may want the role) or EINTR
            if let Some(Some(0)) = retry_or_raise(py, polled)? {
                return Err(eof_error(&reader));
            }
        }
    }

    /// Exactly `n` raw bytes (what `FdIO.read(n)` returns), or EOFError;
    /// for handshakes before the receiver thread starts.
    fn read_exact<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut reader = self.reader();
        loop {
            if let Some(r) = reader.buf.take(n) {
                return Ok(PyBytes::new(py, reader.buf.slice(r)));
            }
            let inner = &mut *reader;
            if let Some(0) = retry_or_raise(py, py.detach(|| inner.fill()))? {
                return Err(PyEOFError::new_err(format!(
                    "expected {n} bytes, got {}",
                    reader.buf.buffered()
                )));
            }
        }
    }

    /// Bytes received and not yet returned.
    fn buffered(&self) -> usize {
        self.reader().buf.buffered()
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Ok(routes) = self.routes.try_lock() {
            for q in routes.values() {
                visit.call(q)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.unroute_all();
    }
}

/// What goes before the bytes of a message that carries one `bytes` object
/// of `len` bytes: the header, the BYTES opcode and the length (STOP after).
pub(crate) fn bytes_frame_head(py: Python<'_>, msgcode: u8, channelid: u32, len: usize) -> PyResult<[u8; HEADER_SIZE + 5]> {
    let mut head = [0u8; HEADER_SIZE + 5];
    let n = i32::try_from(len).map_err(|_| dump_error(py, format!("bytes of {len} bytes exceed 2**31-1")))?;
    let header = weft_wire::pack_header(msgcode, channelid, len + 6).map_err(|e| dump_error(py, e.to_string()))?;
    head[..HEADER_SIZE].copy_from_slice(&header);
    head[HEADER_SIZE] = opcode::BYTES;
    head[HEADER_SIZE + 1..].copy_from_slice(&n.to_be_bytes());
    Ok(head)
}

fn frame_dumps_vec(
    py: Python<'_>,
    msgcode: u8,
    channelid: u32,
    obj: &Bound<'_, PyAny>,
) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.resize(HEADER_SIZE, 0);
    dump_into(&mut out, obj, 0)?;
    Emitter::new(&mut out).stop();
    let header = weft_wire::pack_header(msgcode, channelid, out.len() - HEADER_SIZE)
        .map_err(|e| dump_error(py, e.to_string()))?;
    out[..HEADER_SIZE].copy_from_slice(&header);
    Ok(out)
}

/// The bytes of one message carrying serialized `obj` (header included).
#[pyfunction]
#[pyo3(signature = (msgcode, channelid, obj))]
pub fn frame_dumps<'py>(
    py: Python<'py>,
    msgcode: u8,
    channelid: u32,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let frame = frame_dumps_vec(py, msgcode, channelid, obj)?;
    Ok(PyBytes::new(py, &frame))
}

/// The sending half of a transport: frames written whole, one writer at a
/// time, to a file descriptor it does not own. `send` and `write` are what
/// `FdIO`/`SocketIO` do under their write lock, in one call: the lock is a
/// turn (a flag under a Rust mutex), waited for with the GIL released if
/// another thread has it, and kept while the frame is written so frames
/// never interleave.
///
/// Writes never block for long: the descriptor is written without waiting
/// (a socket with `MSG_DONTWAIT`; any other descriptor should be
/// non-blocking, as `FdIO` makes its pipes) and a full one is waited for in
/// slices of `SIGNAL_SLICE`, the GIL released. Between slices the signal
/// handlers run (Ctrl-C reaches a main thread blocked sending to a stopped
/// peer) and `close()` is noticed. A frame cut short that way (a handler
/// raised, `close()` from another thread, a write error) after some of its
/// bytes went out would leave the peer a torn frame: the writer is then
/// *broken*: it refuses every later write with an OSError saying why
/// (`broken` holds the text), so nothing is sent after a torn frame.
#[pyclass(module = "weft._weft", name = "FrameWriter", frozen)]
pub struct PyFrameWriter {
    fd: i32,
    /// `fd` is a socket: written with `sendmsg(MSG_DONTWAIT)`.
    socket: bool,
    state: Mutex<WriterState>,
    /// Signalled when a writer finishes.
    done: Condvar,
}

#[derive(Default)]
struct WriterState {
    /// A thread is writing a frame.
    busy: bool,
    /// Which thread (`thread_id()`), while `busy`.
    owner: u64,
    /// Which tasklet of that thread (`stackless::io::current_key`; 0 for a
    /// thread without tasklets), while `busy`.
    owner_key: usize,
    /// Tasklets parked until the turn is given back.
    turn_wakers: Vec<crate::event::Waker>,
    /// `close` was called (or a frame was torn): no more writes.
    closed: bool,
    /// Why the stream cannot continue (a frame was torn), if it cannot.
    broken: Option<String>,
    /// `close` has been called.
    close_called: bool,
}

/// The right to write, for one frame; given back when dropped.
struct Turn<'a>(&'a PyFrameWriter);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let wakers = {
            let mut g = self.0.state();
            g.busy = false;
            std::mem::take(&mut g.turn_wakers)
        };
        self.0.done.notify_all();
        for w in wakers {
            w();
        }
    }
}

/// Why no turn was had.
enum NoTurn {
    Closed,
    TimedOut,
    /// This very thread (tasklet) holds the turn (a signal handler or a
    /// finalizer that runs inside a write): waiting would never end.
    Reentrant,
}

fn is_socket(fd: i32) -> bool {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite; we
    // pass a pointer to it, valid for the call, and only read it on success.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

impl PyFrameWriter {
    fn state(&self) -> MutexGuard<'_, WriterState> {
        // held only for a few instructions, never across a write
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn closed_error(&self) -> PyErr {
        match &self.state().broken {
            Some(why) => PyOSError::new_err((libc::EPIPE, why.clone())),
            None => pyo3::exceptions::PyValueError::new_err(
                "write to closed transport: this gateway connection was closed \
                 (gateway.exit(), or its other side ended); make a new gateway to send more",
            ),
        }
    }

    /// Take the turn: wait (GIL released, signal handlers run between
    /// slices) until no other thread writes, at most until `deadline`.
    /// A tasklet parks for the turn (see `stackless::io`): another tasklet
    /// of its thread may hold it, and must run to give it back.
    fn turn(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Result<Turn<'_>, NoTurn>> {
        let me = thread_id();
        let parks = crate::stackless::io::can_park(py);
        let key = if parks { crate::stackless::io::current_key(py) } else { 0 };
        loop {
            {
                let mut g = self.state();
                if g.closed {
                    return Ok(Err(NoTurn::Closed));
                }
                if !g.busy {
                    g.busy = true;
                    g.owner = me;
                    g.owner_key = key;
                    return Ok(Ok(Turn(self)));
                }
                if g.owner == me && g.owner_key == key {
                    return Ok(Err(NoTurn::Reentrant));
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Err(NoTurn::TimedOut));
            }
            if parks {
                // Woken when the turn is given back (or after a slice).
                crate::stackless::io::wait_woken(py, |w| {
                    let mut g = self.state();
                    if g.busy && !g.closed {
                        g.turn_wakers.push(w);
                    } else {
                        drop(g);
                        w();
                    }
                })?;
                continue;
            }
            let until = deadline.map_or(now + SIGNAL_SLICE, |d| d.min(now + SIGNAL_SLICE));
            py.detach(|| {
                let g = self.state();
                if g.busy && !g.closed {
                    let wait = until.saturating_duration_since(Instant::now());
                    drop(self.done.wait_timeout(g, wait).unwrap_or_else(|e| e.into_inner()));
                }
            });
            py.check_signals()?;
        }
    }

    /// Mark the stream broken if a frame of `total` bytes stopped after
    /// `done` of them; returns `err`.
    fn torn(&self, done: usize, total: usize, why: &str, err: PyErr) -> PyErr {
        if done > 0 && done < total {
            let mut g = self.state();
            g.closed = true;
            g.broken = Some(format!(
                "a frame was cut short after {done} of {total} bytes ({why}); \
                 the stream cannot go on, so this transport sends nothing more"
            ));
        }
        err
    }

    /// Write all of `parts`, holding the turn. With `give_up`, return
    /// Ok(false) if not a byte could be written before that instant.
    fn write_parts(&self, py: Python<'_>, parts: &[&[u8]], give_up: Option<Instant>) -> PyResult<bool> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let (fd, socket) = (self.fd, self.socket);
        let mut done = 0;
        while done < total {
            if self.state().closed {
                let err = PyOSError::new_err((libc::EPIPE, "the transport was closed while a frame was being written"));
                return Err(self.torn(done, total, "the transport was closed meanwhile", err));
            }
            let wrote = match py.detach(|| try_write_from(fd, parts, done, socket)) {
                // Full: a tasklet parks until the descriptor is writable
                // (its thread's other tasklets run); a thread waits for it.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if crate::stackless::io::can_park(py) {
                        if let Err(err) = crate::stackless::io::wait_fd(py, fd, libc::POLLOUT) {
                            let why = format!("{} raised into the sending tasklet", err.get_type(py).name().map(|n| n.to_string()).unwrap_or_default());
                            return Err(self.torn(done, total, &why, err));
                        }
                        Ok(0)
                    } else {
                        py.detach(|| wait_writable(fd, Some(SIGNAL_SLICE)).map(|_| 0))
                    }
                }
                r => r,
            };
            match wrote {
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = e.to_string();
                    return Err(self.torn(done, total, &why, os_error(e)));
                }
            }
            if done < total {
                if let Err(e) = py.check_signals() {
                    let why = format!("{} raised by a signal handler", e.get_type(py).name().map(|n| n.to_string()).unwrap_or_default());
                    return Err(self.torn(done, total, &why, e));
                }
                if done == 0 && give_up.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn write_locked(&self, py: Python<'_>, parts: &[&[u8]]) -> PyResult<()> {
        match self.turn(py, None)? {
            Ok(_turn) => self.write_parts(py, parts, None).map(|_| ()),
            Err(NoTurn::Reentrant) => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "send from a signal handler or finalizer while this thread is sending: \
                 it would wait for itself",
            )),
            Err(_) => Err(self.closed_error()),
        }
    }
}

fn deadline_after(timeout: Option<f64>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)))
}

#[pymethods]
impl PyFrameWriter {
    #[new]
    fn new(fd: i32) -> Self {
        PyFrameWriter {
            fd,
            socket: is_socket(fd),
            state: Mutex::new(WriterState::default()),
            done: Condvar::new(),
        }
    }

    /// Write a message (`msgcode`, `channelid`, serialized `obj`, the
    /// unversioned form); ValueError once closed, OSError if the write
    /// fails or the stream is broken. A `bytes` object is written straight
    /// from its buffer.
    fn send(&self, py: Python<'_>, msgcode: u8, channelid: u32, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(b) = obj.cast_exact::<PyBytes>() {
            let head = bytes_frame_head(py, msgcode, channelid, b.as_bytes().len())?;
            return self.write_locked(py, &[&head, b.as_bytes(), &[opcode::STOP]]);
        }
        let frame = frame_dumps_vec(py, msgcode, channelid, obj)?;
        self.write_locked(py, &[&frame])
    }

    /// Write all of `data` (an already framed message).
    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.write_locked(py, &[data])
    }

    /// Write `data` only if the turn comes within `timeout` seconds (None:
    /// no limit) and, with `write_timeout`, its first bytes go out within
    /// that many more: False (nothing written) otherwise, or once closed.
    /// For messages that must not wait behind a blocked writer (the exit
    /// message, closes deferred from finalizers).
    #[pyo3(signature = (data, timeout = None, write_timeout = None))]
    fn try_write(&self, py: Python<'_>, data: &[u8], timeout: Option<f64>, write_timeout: Option<f64>) -> PyResult<bool> {
        match self.turn(py, deadline_after(timeout))? {
            Ok(_turn) => self.write_parts(py, &[data], deadline_after(write_timeout)),
            Err(_) => Ok(false),
        }
    }

    /// Why the stream cannot go on (a frame was cut short), or None.
    #[getter]
    fn broken(&self) -> Option<String> {
        self.state().broken.clone()
    }

    /// Whether writes are refused (closed, or a frame was torn).
    #[getter]
    fn closed(&self) -> bool {
        self.state().closed
    }

    /// Refuse writes from now on; a write in progress in another thread
    /// stops within one slice (its frame is torn: `broken` says so). True
    /// if this call closed it, so the caller closes the descriptor once,
    /// after every writer has let go of it.
    fn close(&self, py: Python<'_>) -> bool {
        let first = {
            let mut g = self.state();
            let first = !g.close_called;
            g.close_called = true;
            g.closed = true;
            first
        };
        // wait (GIL released) until no other thread writes to the
        // descriptor; if this thread is the writer (close from a signal
        // handler inside its write), that write stops at its next look at
        // `closed`, before it touches the descriptor again
        let me = thread_id();
        py.detach(|| {
            let mut g = self.state();
            while g.busy && g.owner != me {
                g = self.done.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        });
        first
    }
}

/// Register the transport on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFrameReader>()?;
    m.add_class::<PyFrameWriter>()?;
    m.add_function(wrap_pyfunction!(frame_dumps, m)?)?;
    Ok(())
}
