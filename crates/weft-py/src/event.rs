//! `weft._weft.Event`: `threading.Event`'s `is_set`/`set`/`clear`/`wait`
//! on a Rust mutex and condition variable, for the channel item queues of
//! `weft._bootstrap.core` (one wake-up per item handed to a waiting thread,
//! without `threading.Condition`'s per-wait lock allocation and Python code).
//! `wait` releases the GIL; in the process's main thread it wakes every
//! 50 ms to run signal handlers, so Ctrl-C still interrupts a blocked
//! `Channel.receive()` as with `threading.Event`.
//!
//! The event itself and the deferred wake-ups of a receiver thread (a
//! thread that calls `FrameReader.read_frames`) are crate
//! `weft-transport`'s `wake` module; this is the binding and the wait loop
//! that runs signal handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
pub(crate) use weft_transport::wake::{take_deferred, Event as Inner, Waker};

pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// A settable flag threads can wait for.
#[pyclass(module = "weft._weft", name = "Event", frozen)]
pub struct PyEvent {
    inner: Arc<Inner>,
}

/// This thread stops holding back wake-ups; wake those held.
#[pyfunction]
pub fn flush_wakeups() {
    weft_transport::wake::stop_deferring().wake();
}

/// Block (GIL released) until `e` is set (true) or `timeout` seconds pass
/// (false); the main thread runs signal handlers every slice.
pub(crate) fn wait(e: &Inner, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
    if e.is_set() {
        return Ok(true);
    }
    let start = Instant::now();
    // NaN, infinite or absurdly long timeouts wait forever
    let deadline = timeout
        .map(|t| Duration::try_from_secs_f64(t.max(0.0)).ok())
        .and_then(|d| d.and_then(|d| start.checked_add(d)));
    let forever = timeout.is_none() || deadline.is_none();
    let main = in_main_thread();
    loop {
        // every waiter re-checks each slice; the main thread also runs
        // signal handlers between slices
        let slice = Instant::now() + SIGNAL_SLICE;
        let until = Some(if forever {
            slice
        } else {
            deadline.map_or(slice, |d| d.min(slice))
        });
        if py.detach(|| e.wait_until(until)) {
            return Ok(true);
        }
        if let Some(d) = deadline {
            if !forever && Instant::now() >= d {
                return Ok(false);
            }
        }
        if main {
            py.check_signals()?;
        }
    }
}

pub(crate) fn in_main_thread() -> bool {
    // SAFETY: getpid and gettid take no arguments and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

#[pymethods]
impl PyEvent {
    #[new]
    fn new() -> Self {
        PyEvent {
            inner: Inner::new(),
        }
    }

    fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    fn set(&self) {
        self.inner.set();
    }

    fn clear(&self) {
        self.inner.clear();
    }

    /// Block until set (True) or `timeout` seconds pass (False).
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        wait(&self.inner, py, timeout)
    }
}

impl PyEvent {
    /// The shared flag, for a tasklet that parks on it.
    pub(crate) fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// An event sharing `inner` (the wake-up of an item queue).
    pub(crate) fn sharing(inner: Arc<Inner>) -> Self {
        PyEvent { inner }
    }
}

/// Register the event type on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEvent>()?;
    m.add_function(wrap_pyfunction!(flush_wakeups, m)?)
}
