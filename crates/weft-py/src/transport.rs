//! `weft._weft.FrameReader`, `send_frame`, `write_all`: the gateway transport
//! of crate `weft-transport` for `weft._bootstrap.core` (docs/gateways.md).
//! Every blocking system call runs with the GIL released; a thread touches
//! the GIL once per batch of received frames and once per sent frame.

use pyo3::exceptions::{PyEOFError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use weft_transport::{write_from, FdReader, HEADER_SIZE};
use weft_wire::opcode;

use crate::event::take_deferred;
use crate::wire::{dump_error, load_error, to_value};

/// Most frames (and about most payload bytes) one `read_frames` returns.
const BATCH_FRAMES: usize = 512;
const BATCH_BYTES: usize = 4 << 20;

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string()))
}

/// Reads whole frames from a file descriptor it does not own.
#[pyclass(module = "weft._weft", name = "FrameReader")]
pub struct PyFrameReader {
    inner: FdReader,
}

#[pymethods]
impl PyFrameReader {
    #[new]
    fn new(fd: i32, max_frame: u32) -> Self {
        PyFrameReader {
            inner: FdReader::new(fd, max_frame),
        }
    }

    /// The next frames: a non-empty list of `(msgcode, channelid, payload)`.
    /// Blocks (GIL released) until at least one whole frame has arrived.
    /// EOFError at the end of the stream (its text says if it ended inside a
    /// frame), LoadError for a bad header (after the good frames before it).
    fn read_frames<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // wake-ups for the frames dispatched since the last call: sent once
        // the GIL is released below, or when `held` drops
        let mut held = take_deferred();
        let out = PyList::empty(py);
        loop {
            let mut bytes = 0;
            while out.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
                let (h, range) = match self.inner.buf.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    // the good frames first; the error comes again next call
                    Err(_) if !out.is_empty() => break,
                    Err(e) => return Err(load_error(py, e.to_string())),
                };
                bytes += range.len();
                let payload = PyBytes::new(py, self.inner.buf.slice(range));
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
            let inner = &mut self.inner;
            let mut wake = std::mem::take(&mut held);
            match py.detach(move || {
                wake.wake();
                inner.fill()
            }) {
                Ok(0) => {
                    return Err(PyEOFError::new_err(match self.inner.buf.incomplete() {
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
    fn read_exact<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        loop {
            if let Some(r) = self.inner.buf.take(n) {
                return Ok(PyBytes::new(py, self.inner.buf.slice(r)));
            }
            let inner = &mut self.inner;
            match py.detach(|| inner.fill()) {
                Ok(0) => {
                    return Err(PyEOFError::new_err(format!(
                        "expected {n} bytes, got {}",
                        self.inner.buf.buffered()
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
        self.inner.buf.buffered()
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
