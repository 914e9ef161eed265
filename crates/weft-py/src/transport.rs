//! `weft._weft.FrameReader`, `send_frame`, `write_all`: the gateway transport
//! of crate `weft-transport` for `weft._bootstrap.core` (docs/gateways.md).
//! Every blocking system call runs with the GIL released; a thread touches
//! the GIL once per batch of received frames and once per sent frame.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyEOFError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use weft_transport::{write_from, FdReader, HEADER_SIZE};
use weft_wire::opcode;

use crate::event::take_deferred;
use crate::queue::PyItemQueue;
use crate::wire::{decode_plain, dump_error, load_error, to_value};

/// Most frames (and about most payload bytes) one `read_frames` returns.
const BATCH_FRAMES: usize = 512;
const BATCH_BYTES: usize = 4 << 20;

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string()))
}

/// Reads whole frames from a file descriptor it does not own.
///
/// Routes: `route(cid, queue)` names the `ItemQueue` of a channel that has
/// no callback. A CHANNEL_DATA frame for a routed channel whose payload
/// decodes without help (no channel references, no error) is put straight
/// into that queue by `read_frames`, without Python. Everything else is
/// returned for `core` to dispatch; once one frame of a batch is returned,
/// so are all after it, so frames are dispatched in the order they came.
#[pyclass(module = "weft._weft", name = "FrameReader", frozen)]
pub struct PyFrameReader {
    /// Locked by the one thread that reads (the receiver thread).
    inner: Mutex<FdReader>,
    routes: Mutex<HashMap<u32, Py<PyItemQueue>>>,
}

impl PyFrameReader {
    fn reader(&self) -> MutexGuard<'_, FdReader> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<u32, Py<PyItemQueue>>> {
        // never held across a call into Python (a finalizer could route)
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyFrameReader {
    #[new]
    fn new(fd: i32, max_frame: u32) -> Self {
        PyFrameReader {
            inner: Mutex::new(FdReader::new(fd, max_frame)),
            routes: Mutex::new(HashMap::new()),
        }
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

    /// The next frames: a non-empty list of `(msgcode, channelid, payload)`.
    /// Blocks (GIL released) until at least one whole frame has arrived.
    /// EOFError at the end of the stream (its text says if it ended inside a
    /// frame), LoadError for a bad header (after the good frames before it).
    fn read_frames<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // wake-ups for the frames dispatched since the last call: sent once
        // the GIL is released below, or when `held` drops
        let mut held = take_deferred();
        let out = PyList::empty(py);
        let mut reader = self.reader();
        loop {
            let mut frames = 0;
            let mut bytes = 0;
            let mut need_bytes = false;
            while frames < BATCH_FRAMES && bytes < BATCH_BYTES {
                let (h, range) = match reader.buf.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        need_bytes = true;
                        break;
                    }
                    // the good frames first; the error comes again next call
                    Err(_) if frames > 0 => break,
                    Err(e) => return Err(load_error(py, e.to_string())),
                };
                frames += 1;
                bytes += range.len();
                let raw = reader.buf.slice(range);
                if out.is_empty()
                    && h.msgcode == weft_wire::CHANNEL_DATA
                    && self.routes().contains_key(&h.channel_id)
                {
                    if let Some(item) = decode_plain(py, raw) {
                        // Look again: decoding can run the GC, whose
                        // finalizers can let another thread unroute the
                        // channel (setcallback drains the queue first). The
                        // push runs no Python, so it cannot race with that.
                        let routes = self.routes();
                        if let Some(queue) = routes.get(&h.channel_id) {
                            queue.get().push(item.unbind());
                            continue;
                        }
                    }
                }
                let payload = PyBytes::new(py, raw);
                out.append(PyTuple::new(
                    py,
                    [
                        h.msgcode.into_pyobject(py)?.into_any(),
                        h.channel_id.into_pyobject(py)?.into_any(),
                        payload.into_any(),
                    ],
                )?)?;
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if !need_bytes {
                // a whole batch went into queues and more frames are
                // buffered: wake their waiters, then take the next batch
                take_deferred().wake();
                continue;
            }
            let inner = &mut *reader;
            // held since the last call, and set by the routed items above
            let mut wake = std::mem::take(&mut held);
            let mut routed = take_deferred();
            match py.detach(move || {
                wake.wake();
                routed.wake();
                inner.fill()
            }) {
                Ok(0) => {
                    return Err(PyEOFError::new_err(match reader.buf.incomplete() {
                        Some((want, got)) => {
                            format!("connection closed inside a frame: expected {want} bytes, got {got}")
                        }
                        None => "connection closed".to_string(),
                    }))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Err(e) => return Err(os_error(e)),
            }
        }
    }

    /// Exactly `n` raw bytes (what `FdIO.read(n)` returns), or EOFError.
    fn read_exact<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut reader = self.reader();
        loop {
            if let Some(r) = reader.buf.take(n) {
                return Ok(PyBytes::new(py, reader.buf.slice(r)));
            }
            let inner = &mut *reader;
            match py.detach(|| inner.fill()) {
                Ok(0) => {
                    return Err(PyEOFError::new_err(format!(
                        "expected {n} bytes, got {}",
                        reader.buf.buffered()
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Err(e) => return Err(os_error(e)),
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

/// Write all of `parts` to `fd`, the GIL released around each `writev`.
fn write_parts(py: Python<'_>, fd: i32, parts: &[&[u8]]) -> PyResult<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        match py.detach(|| write_from(fd, parts, done)) {
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
            Err(e) => return Err(os_error(e)),
        }
    }
    Ok(())
}

/// Write all of `data` (bytes) to `fd`.
#[pyfunction]
pub fn write_all(py: Python<'_>, fd: i32, data: &Bound<'_, PyBytes>) -> PyResult<()> {
    write_parts(py, fd, &[data.as_bytes()])
}

/// Frame `obj` as a message (`msgcode`, `channelid`, serialized `obj`, the
/// unversioned form) and write it to `fd`. A `bytes` object is written
/// straight from its buffer, without a copy.
#[pyfunction]
pub fn send_frame(
    py: Python<'_>,
    fd: i32,
    msgcode: u8,
    channelid: u32,
    obj: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        let data = b.as_bytes();
        // header, then the BYTES opcode and its length, the bytes, STOP
        let mut head = [0u8; HEADER_SIZE + 5];
        let len = i32::try_from(data.len())
            .map_err(|_| dump_error(py, format!("bytes of {} bytes exceed 2**31-1", data.len())))?;
        let header = weft_wire::pack_header(msgcode, channelid, data.len() + 6)
            .map_err(|e| dump_error(py, e.to_string()))?;
        head[..HEADER_SIZE].copy_from_slice(&header);
        head[HEADER_SIZE] = opcode::BYTES;
        head[HEADER_SIZE + 1..].copy_from_slice(&len.to_be_bytes());
        return write_parts(py, fd, &[&head, data, &[opcode::STOP]]);
    }
    let frame = frame_dumps_vec(py, msgcode, channelid, obj)?;
    write_parts(py, fd, &[&frame])
}

fn frame_dumps_vec(
    py: Python<'_>,
    msgcode: u8,
    channelid: u32,
    obj: &Bound<'_, PyAny>,
) -> PyResult<Vec<u8>> {
    let value = to_value(obj, 0)?;
    let mut out = vec![0u8; HEADER_SIZE];
    weft_wire::encode_append(&mut out, &value).map_err(|e| dump_error(py, e.to_string()))?;
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

/// Register the transport on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFrameReader>()?;
    m.add_function(wrap_pyfunction!(write_all, m)?)?;
    m.add_function(wrap_pyfunction!(send_frame, m)?)?;
    m.add_function(wrap_pyfunction!(frame_dumps, m)?)?;
    Ok(())
}
