//! The Python-defined types the engine raises and recognises: `TaskletExit`
//! (a `SystemExit` and a greenlet `GreenletExit`, so that both Stackless's
//! and greenlet's rules treat it as a quiet end) and `bomb`. They are made
//! in `weft/stackless.py` and handed over once, at import.
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static TASKLET_EXIT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BOMB: PyOnceLock<Py<PyType>> = PyOnceLock::new();

pub(crate) fn tasklet_exit_type(py: Python<'_>) -> Bound<'_, PyType> {
    match TASKLET_EXIT.get(py) {
        Some(t) => t.bind(py).clone(),
        None => py.get_type::<crate::greenlet::GreenletExit>(),
    }
}

pub(crate) fn tasklet_exit(py: Python<'_>, _args: ()) -> PyErr {
    match tasklet_exit_type(py).call0() {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

pub(crate) fn is_bomb(py: Python<'_>, v: &Bound<'_, PyAny>) -> bool {
    BOMB.get(py).is_some_and(|b| v.get_type_ptr().cast::<pyo3::ffi::PyObject>() == b.as_ptr())
}

/// The exception a bomb carries.
pub(crate) fn bomb_error(py: Python<'_>, b: &Bound<'_, PyAny>) -> PyErr {
    let r = (|| -> PyResult<PyErr> {
        let typ = b.getattr("type")?;
        let val = b.getattr("value")?;
        let tb = b.getattr("traceback")?;
        super::make_exception(py, &typ, &val, &tb)
    })();
    r.unwrap_or_else(|e| e)
}

#[pyfunction]
fn _init_types(py: Python<'_>, tasklet_exit: Py<PyType>, bomb: Py<PyType>) -> PyResult<()> {
    let _ = TASKLET_EXIT.set(py, tasklet_exit);
    let _ = BOMB.set(py, bomb);
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_init_types, m)?)?;
    Ok(())
}
