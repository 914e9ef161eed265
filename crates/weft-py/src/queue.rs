//! `weft._weft.ItemQueue`: the received items of one channel, for
//! `weft._bootstrap.core` with the Rust codec (the pure-Python twin is
//! `core._ItemQueue`). A deque and a wake-up [`Inner`] in one object, so the
//! receiver thread can route a decoded item into it without running Python
//! (`FrameReader.route`, docs/gateways.md), and a `receive()` that finds an
//! item is one call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use pyo3::{PyTraverseError, PyVisit};

use weft_transport::wake::WaiterFlag;

use crate::event::{Inner, PyEvent};
use crate::transport::{Direct, PyFrameReader};

/// `core.Empty`: raised by `get_nowait` and by `get` after its timeout.
fn empty_error(py: Python<'_>) -> PyErr {
    static T: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match T.import(py, "weft._bootstrap.core", "Empty") {
        Ok(t) => PyErr::from_type(t.clone(), ()),
        Err(e) => e,
    }
}

/// A FIFO of received items that threads can wait on.
#[pyclass(module = "weft._weft", name = "ItemQueue", frozen)]
pub struct PyItemQueue {
    items: Mutex<VecDeque<Py<PyAny>>>,
    ready: Arc<Inner>,
    /// The reader a waiting thread may read from itself (`attach`).
    direct: OnceLock<Py<PyFrameReader>>,
    /// Raised while such a thread is blocked for this queue: a `put` pokes it.
    direct_waiter: WaiterFlag,
}

impl PyItemQueue {
    fn items(&self) -> MutexGuard<'_, VecDeque<Py<PyAny>>> {
        // only touched with the GIL held and never across a call into
        // Python, so it is never contended; recover from poisoning anyway
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pop(&self) -> Option<Py<PyAny>> {
        self.items().pop_front()
    }

    pub(crate) fn ready(&self) -> &Arc<Inner> {
        &self.ready
    }

    pub(crate) fn waiter(&self) -> &WaiterFlag {
        &self.direct_waiter
    }

    /// Append `item` and wake a waiter (held back on a receiver thread).
    pub(crate) fn push(&self, item: Py<PyAny>) {
        self.items().push_back(item);
        if !self.ready.is_set() {
            self.ready.set();
        }
        if self.direct_waiter.must_poke() {
            if let Some(reader) = self.direct.get() {
                reader.get().poke();
            }
        }
    }
}

#[pymethods]
impl PyItemQueue {
    #[new]
    fn new() -> Self {
        PyItemQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Inner::new(),
            direct: OnceLock::new(),
            direct_waiter: WaiterFlag::new(),
        }
    }

    /// Let a thread that waits in `get` read frames from `reader` itself
    /// (the reader that routes this queue's channel). Once per queue.
    fn attach(&self, reader: Py<PyFrameReader>) -> PyResult<()> {
        self.direct
            .set(reader)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("queue is attached already"))
    }

    fn put(&self, item: Py<PyAny>) {
        self.push(item);
    }

    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.pop().ok_or_else(|| empty_error(py))
    }

    /// The next item, waiting (GIL released) up to `timeout` seconds;
    /// `core.Empty` after that. The protocol of `core._ItemQueue.get`: clear
    /// the wake-up, look once more, then wait; a `put` after that last look
    /// finds the wake-up clear and sets it.
    #[pyo3(signature = (timeout = None))]
    fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        if let Some(x) = self.pop() {
            return Ok(x);
        }
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)));
        if let Some(reader) = self.direct.get() {
            let reader = reader.get();
            if reader.direct_allowed() {
                match reader.read_for(py, self, deadline)? {
                    Direct::Item(x) => return Ok(x),
                    Direct::TimedOut => return self.pop().ok_or_else(|| empty_error(py)),
                    Direct::Fallback => {}
                }
            }
        }
        loop {
            self.ready.clear();
            if let Some(x) = self.pop() {
                return Ok(x);
            }
            let remaining = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(empty_error(py));
                    }
                    Some(left.as_secs_f64())
                }
            };
            crate::event::wait(&self.ready, py, remaining)?;
            if let Some(x) = self.pop() {
                return Ok(x);
            }
        }
    }

    pub(crate) fn qsize(&self) -> usize {
        self.items().len()
    }

    /// A `weft._weft.Event` set whenever an item is put, for waits that go
    /// through `core.block_until` (a tasklet scheduler's hook).
    #[getter]
    fn event(&self) -> PyEvent {
        PyEvent::sharing(self.ready.clone())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // the GC runs with the GIL held, so no one holds the lock now
        if let Ok(items) = self.items.try_lock() {
            for item in items.iter() {
                visit.call(item)?;
            }
        }
        if let Some(reader) = self.direct.get() {
            visit.call(reader)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = std::mem::take(&mut *self.items());
        drop(taken);
    }
}

/// Register the queue type on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyItemQueue>()
}
