//! `weft._weft._testing`: fault injection for tests, what greenlet's
//! `UnswitchableGreenlet` does for its own suite. A greenlet marked here
//! makes every switch to it made by `switch()`, `throw()`, a kill or the C
//! API (the switches that go through `switch::prepare_switch`; not a
//! finishing greenlet's return to its parent, nor a tasklet scheduler's
//! switch) fail, at one of two points:
//!
//! * `"switch"` (greenlet's `force_switch_error`): at the last moment before
//!   anything is put in flight, after the checks and the lookup of `run`:
//!   the switch raises SystemError in the switching greenlet with greenlet's
//!   message, and every party stays as it was (the target unstarted or
//!   suspended, the switching greenlet current, nothing left in the
//!   thread's in-flight slots).
//! * `"fatal"` (greenlet's `force_slp_switch_error`): after the running
//!   greenlet's interpreter state was saved, where a failing stack switch
//!   cannot be backed out: the process aborts with `Py_FatalError`, as
//!   greenlet's does. For subprocess tests only.
//!
//! weft's stack switch itself cannot fail (no system call, no allocation
//! that is not fatal anyway), so these are the two points where a failure
//! is either recoverable or not. Both are checked in `prepare_switch`,
//! which reads the target's state anyway: one byte compared per switch,
//! nothing in the stack-switching frames.

use pyo3::prelude::*;

use super::Greenlet;

/// The failure a switch to a coroutine is made to have.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fault {
    None,
    /// SystemError before the stack moves.
    Switch,
    /// Abort after the origin's state is saved.
    Fatal,
}

/// The SystemError of a failed switch to a greenlet (`started`: it has run
/// before), in greenlet's words, which its suite matches.
pub(crate) fn switch_error(started: bool) -> PyErr {
    pyo3::exceptions::PySystemError::new_err(if started {
        "Failed to switch stacks into a running greenlet. (fault injected by weft._weft._testing)"
    } else {
        "Failed to switch stacks into a greenlet for the first time. (fault injected by weft._weft._testing)"
    })
}

/// Called where a fatal fault strikes: the origin's state is saved, the
/// stack has not moved.
#[cold]
pub(crate) fn fatal() -> ! {
    // SAFETY: Py_FatalError takes a NUL-terminated message (a C string
    // literal) and never returns; it needs no GIL.
    unsafe {
        pyo3::ffi::Py_FatalError(
            c"weft: failed low-level stack switch (fault injected by weft._weft._testing). The stack is probably corrupt.".as_ptr(),
        )
    }
}

/// Make every later switch to `g` fail: `kind` "switch", "fatal", or None
/// (switches work again).
#[pyfunction]
#[pyo3(signature = (g, kind))]
fn set_fault(g: &Bound<'_, Greenlet>, kind: Option<&str>) -> PyResult<()> {
    let fault = match kind {
        None => Fault::None,
        Some("switch") => Fault::Switch,
        Some("fatal") => Fault::Fatal,
        Some(other) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown fault {other:?}: use 'switch', 'fatal' or None"
            )))
        }
    };
    g.get().coro().fault.set(fault);
    Ok(())
}

/// The fault set on `g`: "switch", "fatal" or None.
#[pyfunction]
fn get_fault(g: &Bound<'_, Greenlet>) -> Option<&'static str> {
    match g.get().coro().fault.get() {
        Fault::None => None,
        Fault::Switch => Some("switch"),
        Fault::Fatal => Some("fatal"),
    }
}

/// Register `weft._weft._testing`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let t = PyModule::new(py, "_testing")?;
    t.add_function(wrap_pyfunction!(set_fault, &t)?)?;
    t.add_function(wrap_pyfunction!(get_fault, &t)?)?;
    m.add("_testing", &t)?;
    py.import("sys")?.getattr("modules")?.set_item("weft._weft._testing", t)?;
    Ok(())
}
