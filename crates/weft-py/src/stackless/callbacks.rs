//! The scheduler's Python hooks: the channel callback, the schedule
//! callback and the error handler. Each is one flag read on the hot path
//! while unset.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::prelude::*;

struct Hook {
    set: AtomicBool,
    f: Mutex<Option<Py<PyAny>>>,
}

impl Hook {
    const fn new() -> Self {
        Hook {
            set: AtomicBool::new(false),
            f: Mutex::new(None),
        }
    }

    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.f
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.clone_ref(py))
    }

    /// Installs `f` (None clears); returns the previous hook or None.
    fn replace(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let new = if f.is_none(py) {
            None
        } else {
            if !f.bind(py).is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "the callback must be callable or None",
                ));
            }
            Some(f)
        };
        self.set.store(new.is_some(), Ordering::Release);
        let old = std::mem::replace(&mut *self.f.lock().unwrap_or_else(|e| e.into_inner()), new);
        Ok(old.unwrap_or_else(|| py.None()))
    }
}

static CHANNEL: Hook = Hook::new();
static SCHEDULE: Hook = Hook::new();
static ERROR: Hook = Hook::new();

pub(crate) fn channel_hook_set() -> bool {
    CHANNEL.set.load(Ordering::Acquire)
}

pub(crate) fn schedule_hook_set() -> bool {
    SCHEDULE.set.load(Ordering::Acquire)
}

/// `callback(channel, tasklet, sending, willblock)`.
pub(crate) fn call_channel_hook(
    py: Python<'_>,
    chan: &Bound<'_, PyAny>,
    t: &Bound<'_, PyAny>,
    sending: bool,
    will_block: bool,
) -> PyResult<()> {
    if let Some(f) = CHANNEL.get(py) {
        f.call1(py, (chan, t, sending, will_block))?;
    }
    Ok(())
}

/// `callback(prev, next)`.
pub(crate) fn call_schedule_hook(
    py: Python<'_>,
    prev: &Bound<'_, PyAny>,
    next: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Some(f) = SCHEDULE.get(py) {
        f.call1(py, (prev, next))?;
    }
    Ok(())
}

/// An uncaught tasklet exception: the error handler gets `(type, value,
/// traceback)`; what is left for the main tasklet is returned (the error
/// itself without a handler, the handler's own error if it raises).
pub(crate) fn handle_error(py: Python<'_>, e: PyErr) -> Option<PyErr> {
    let Some(h) = ERROR.get(py) else {
        return Some(e);
    };
    let typ = e.get_type(py);
    let val = e.value(py).clone();
    let tb = e
        .traceback(py)
        .map(|t| t.into_any())
        .unwrap_or_else(|| py.None().into_bound(py));
    h.call1(py, (typ, val, tb)).err()
}

#[pyfunction]
fn set_channel_callback(py: Python<'_>, callable: Py<PyAny>) -> PyResult<Py<PyAny>> {
    CHANNEL.replace(py, callable)
}

#[pyfunction]
fn get_channel_callback(py: Python<'_>) -> Py<PyAny> {
    CHANNEL.get(py).unwrap_or_else(|| py.None())
}

#[pyfunction]
fn set_schedule_callback(py: Python<'_>, callable: Py<PyAny>) -> PyResult<Py<PyAny>> {
    SCHEDULE.replace(py, callable)
}

#[pyfunction]
fn get_schedule_callback(py: Python<'_>) -> Py<PyAny> {
    SCHEDULE.get(py).unwrap_or_else(|| py.None())
}

/// Sets the handler of uncaught tasklet exceptions; returns the old one.
#[pyfunction]
fn set_error_handler(py: Python<'_>, handler: Py<PyAny>) -> PyResult<Py<PyAny>> {
    ERROR.replace(py, handler)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_channel_callback, m)?)?;
    m.add_function(wrap_pyfunction!(get_channel_callback, m)?)?;
    m.add_function(wrap_pyfunction!(set_schedule_callback, m)?)?;
    m.add_function(wrap_pyfunction!(get_schedule_callback, m)?)?;
    m.add_function(wrap_pyfunction!(set_error_handler, m)?)?;
    Ok(())
}
