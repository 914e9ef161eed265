//! greenlet's C API: the `_C_API` capsule with its 12 slots, in the order
//! greenlet.h reads them, so C extensions written against greenlet.h work
//! unchanged. Every entry reuses the Python-level implementation.
use std::ffi::c_void;
use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::thread::Passing;
use super::{error, Greenlet, GreenletExit, Status};

type Obj = *mut ffi::PyObject;

/// Runs `f` with the GIL (C callers hold it), turning an `Err` into a set
/// exception and `err_value`.
fn guarded<R>(err_value: R, f: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: greenlet's C API is only callable with the GIL held; entering
    // PyO3's attached state makes dropped references be released at once.
    unsafe {
        Python::attach_unchecked(|py| match f(py) {
            Ok(v) => v,
            Err(e) => {
                e.restore(py);
                err_value
            }
        })
    }
}

/// greenlet's check on the greenlet an entry is called on: NULL or not a
/// greenlet is `PyErr_BadArgument()` (TypeError "bad argument type for
/// built-in operation").
fn as_greenlet<'py>(py: Python<'py>, g: Obj) -> PyResult<Bound<'py, Greenlet>> {
    if g.is_null() {
        return Err(bad_argument(py));
    }
    // SAFETY: a borrowed, non-null object pointer from the caller.
    let any = unsafe { Bound::from_borrowed_ptr(py, g) };
    any.cast_into::<Greenlet>().map_err(|_| bad_argument(py))
}

fn bad_argument(py: Python<'_>) -> PyErr {
    // SAFETY: GIL held; PyErr_BadArgument only sets the error indicator.
    unsafe { ffi::PyErr_BadArgument() };
    PyErr::fetch(py)
}

/// `PyGreenlet_New(run, parent)`: greenlet calls its own tp_new and tp_init
/// with `run` and `parent` as keywords (either may be NULL; a None parent
/// means the current greenlet), so this does the same.
unsafe extern "C" fn new_greenlet(run: Obj, parent: Obj) -> Obj {
    guarded(std::ptr::null_mut(), |py| {
        let kwargs = PyDict::new(py);
        if !run.is_null() {
            // SAFETY: borrowed from the caller.
            kwargs.set_item("run", unsafe { Bound::from_borrowed_ptr(py, run) })?;
        }
        if !parent.is_null() {
            // SAFETY: borrowed from the caller.
            kwargs.set_item("parent", unsafe { Bound::from_borrowed_ptr(py, parent) })?;
        }
        Ok(py.get_type::<Greenlet>().call((), Some(&kwargs))?.into_ptr())
    })
}

unsafe extern "C" fn get_current() -> Obj {
    guarded(std::ptr::null_mut(), |py| Ok(super::getcurrent_unless_finalizing(py)?.into_ptr()))
}

unsafe extern "C" fn throw(g: Obj, typ: Obj, val: Obj, tb: Obj) -> Obj {
    guarded(std::ptr::null_mut(), |py| {
        let g = as_greenlet(py, g)?;
        let none = py.None().into_bound(py);
        // SAFETY: borrowed (possibly null) pointers from the caller.
        let opt = |p: Obj| if p.is_null() { None } else { Some(unsafe { Bound::from_borrowed_ptr(py, p) }) };
        let typ = opt(typ).unwrap_or_else(|| py.get_type::<GreenletExit>().into_any());
        let err = super::make_throw(py, &typ, opt(val).as_ref().unwrap_or(&none), opt(tb).as_ref().unwrap_or(&none))?;
        Ok(super::switch::switch_to(py, &g, Passing::Raise(err))?.into_ptr())
    })
}

unsafe extern "C" fn switch(g: Obj, args: Obj, kwargs: Obj) -> Obj {
    guarded(std::ptr::null_mut(), |py| {
        let g = as_greenlet(py, g)?;
        let args = if args.is_null() {
            PyTuple::empty(py).unbind()
        } else {
            // SAFETY: borrowed from the caller.
            unsafe { Bound::from_borrowed_ptr(py, args) }.cast_into::<PyTuple>()?.unbind()
        };
        // greenlet ignores a kwargs that is not a dict.
        let kwargs = if kwargs.is_null() {
            None
        } else {
            // SAFETY: borrowed from the caller.
            unsafe { Bound::from_borrowed_ptr(py, kwargs) }.cast_into::<PyDict>().ok().map(|d| d.unbind())
        };
        Ok(super::switch::switch_to(py, &g, Passing::Args(args, kwargs))?.into_ptr())
    })
}

/// `PyGreenlet_SetParent`: the `parent` setter's rules (NULL is a delete:
/// AttributeError; not a greenlet: TypeError; a cycle or another thread's
/// greenlet: ValueError; a main greenlet's parent: AttributeError).
unsafe extern "C" fn set_parent(g: Obj, parent: Obj) -> c_int {
    guarded(-1, |py| {
        let g = as_greenlet(py, g)?;
        if parent.is_null() {
            return Err(pyo3::exceptions::PyAttributeError::new_err("can't delete attribute"));
        }
        // SAFETY: borrowed, non-null, from the caller.
        Greenlet::set_parent(&g, unsafe { Bound::from_borrowed_ptr(py, parent) })?;
        Ok(0)
    })
}

unsafe extern "C" fn is_main(g: Obj) -> c_int {
    guarded(-1, |py| Ok(as_greenlet(py, g)?.get().coro().is_main as c_int))
}

unsafe extern "C" fn is_started(g: Obj) -> c_int {
    guarded(-1, |py| Ok((as_greenlet(py, g)?.get().coro().status.get() != Status::Unstarted) as c_int))
}

unsafe extern "C" fn is_active(g: Obj) -> c_int {
    guarded(-1, |py| Ok(as_greenlet(py, g)?.get().__bool__() as c_int))
}

unsafe extern "C" fn get_parent(g: Obj) -> Obj {
    guarded(std::ptr::null_mut(), |py| {
        let g = as_greenlet(py, g)?;
        Ok(g.get().get_parent(py).map_or(std::ptr::null_mut(), |p| p.into_ptr()))
    })
}

struct Table([*mut c_void; 12]);
// SAFETY: the table is written once before the capsule is created and only
// read afterwards; its entries are process-wide type and function pointers.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

static TABLE: std::sync::OnceLock<Box<Table>> = std::sync::OnceLock::new();

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let table = TABLE.get_or_init(|| {
        Box::new(Table([
            py.get_type::<Greenlet>().as_type_ptr() as *mut c_void,
            py.get_type::<error>().as_type_ptr() as *mut c_void,
            py.get_type::<GreenletExit>().as_type_ptr() as *mut c_void,
            new_greenlet as *mut c_void,
            get_current as *mut c_void,
            throw as *mut c_void,
            switch as *mut c_void,
            set_parent as *mut c_void,
            is_main as *mut c_void,
            is_started as *mut c_void,
            is_active as *mut c_void,
            get_parent as *mut c_void,
        ]))
    });
    // SAFETY: the table lives for the whole process (a static); the name is a
    // static C string, as PyCapsule_New requires.
    let capsule = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCapsule_New(table.0.as_ptr() as *mut c_void, c"greenlet._C_API".as_ptr(), None),
        )?
    };
    m.add("_C_API", capsule)
}
