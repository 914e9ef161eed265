//! greenlet.h's object layout. C and Cython extensions (gevent's compiled
//! modules among them) subclass `greenlet.greenlet` through greenlet.h:
//!
//! ```c
//! typedef struct _greenlet {
//!     PyObject_HEAD
//!     PyObject* weakreflist;
//!     PyObject* dict;
//!     greenlet::Greenlet* pimpl;
//! } PyGreenlet;
//! ```
//!
//! and put their own fields right after `sizeof(PyGreenlet)`. weft's type has
//! exactly that layout: `Greenlet` (the PyO3 class contents) is the three
//! trailing fields, and all of weft's state sits behind `pimpl` (a `Coro` in
//! its own heap block). PyO3 knows nothing of the weak-reference list and the
//! dict: the type's offsets are set here, right after PyO3 made the type, and
//! `Greenlet`'s `__traverse__`, `__clear__`, `__dict__` and drop, with the
//! dealloc in typeslots.rs, do what PyO3's `dict`/`weakref` options would.
//!
//! Instances are made by `new_object` only (the type's `tp_new` is `tp_new`
//! below, not PyO3's): PyO3 would get the memory from `object.__new__`, which
//! on 3.11 already puts a dict in a type with a `tp_dictoffset` (a dict PyO3
//! then overwrites and leaks) and may run the collector while the object is
//! tracked but its `pimpl` not yet written. `new_object` takes the memory
//! from `tp_alloc` and writes the fields before anything else can run.
use std::mem::{offset_of, size_of};

use pyo3::exceptions::{PyImportError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::Greenlet;

/// An instance as greenlet.h declares it (`PyGreenlet`).
#[repr(C)]
pub struct PyGreenlet {
    pub ob_base: ffi::PyObject,
    pub contents: Greenlet,
}

/// Where `Greenlet` (the fields after the header) starts in an object.
pub const CONTENTS_OFFSET: usize = offset_of!(PyGreenlet, contents);
/// `sizeof(PyGreenlet)`: 40 bytes on 64-bit targets.
pub const BASIC_SIZE: usize = size_of::<PyGreenlet>();
pub const WEAKLIST_OFFSET: usize = offset_of!(PyGreenlet, contents) + offset_of!(Greenlet, weakreflist);
pub const DICT_OFFSET: usize = offset_of!(PyGreenlet, contents) + offset_of!(Greenlet, dict);
pub const PIMPL_OFFSET: usize = offset_of!(PyGreenlet, contents) + offset_of!(Greenlet, pimpl);

const _: () = {
    let w = size_of::<usize>();
    assert!(offset_of!(PyGreenlet, contents) == size_of::<ffi::PyObject>());
    assert!(WEAKLIST_OFFSET == size_of::<ffi::PyObject>());
    assert!(DICT_OFFSET == WEAKLIST_OFFSET + w);
    assert!(PIMPL_OFFSET == DICT_OFFSET + w);
    assert!(BASIC_SIZE == PIMPL_OFFSET + w);
};

/// Sets the weak-reference and dict offsets on the type PyO3 just made, after
/// checking that PyO3 laid instances out as greenlet.h does.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let tp = py.get_type::<Greenlet>().as_type_ptr();
    // SAFETY: the type was just created by `add_class` and has no instances
    // or subclasses yet, so nothing has read the offsets changed here;
    // PyType_Modified drops any cached lookups. GIL held.
    unsafe {
        let basic = (*tp).tp_basicsize as usize;
        if basic != BASIC_SIZE || (*tp).tp_itemsize != 0 {
            return Err(PyImportError::new_err(format!(
                "weft: greenlet instances are {basic} bytes, greenlet.h's PyGreenlet is {BASIC_SIZE} (PyO3 layout changed?)"
            )));
        }
        if (*tp).tp_dictoffset != 0 || (*tp).tp_weaklistoffset != 0 {
            return Err(PyImportError::new_err("weft: greenlet type already has dict or weakref slots"));
        }
        (*tp).tp_weaklistoffset = WEAKLIST_OFFSET as ffi::Py_ssize_t;
        (*tp).tp_dictoffset = DICT_OFFSET as ffi::Py_ssize_t;
        // `__new__` in the type's dict (tp_new_wrapper) calls the slot it
        // finds at call time, so replacing the slot covers it too.
        (*tp).tp_new = Some(tp_new);
        ffi::PyType_Modified(tp);
    }
    Ok(())
}

/// Refuses to make an instance of a subtype whose instances are too small to
/// hold a `PyGreenlet` (a C extension built against a different greenlet.h,
/// or a static type that set its own `tp_basicsize` wrong): PyO3 would write
/// our fields past the end of the allocation. A clear exception instead of
/// memory corruption.
pub fn check_subtype(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let tp = cls.as_type_ptr();
    // SAFETY: a live type object (PyO3 passes the subtype being created).
    let (basic, item, dict, weak) =
        unsafe { ((*tp).tp_basicsize, (*tp).tp_itemsize, (*tp).tp_dictoffset, (*tp).tp_weaklistoffset) };
    let inside = |off: ffi::Py_ssize_t| off > 0 && (off as usize) < BASIC_SIZE && off as usize != DICT_OFFSET && off as usize != WEAKLIST_OFFSET;
    if (basic as usize) < BASIC_SIZE || basic < 0 || item != 0 || inside(dict) || inside(weak) {
        return Err(PyTypeError::new_err(format!(
            "{} cannot be a greenlet subtype on weft: its instances are {basic} bytes (item size {item}, dict at {dict}, \
             weakrefs at {weak}), but a greenlet needs greenlet.h's PyGreenlet layout ({BASIC_SIZE} bytes); \
             was it built against another greenlet.h?",
            cls.name().map(|n| n.to_string()).unwrap_or_else(|_| "this type".into())
        )));
    }
    Ok(())
}

/// Makes an instance of `tp` (greenlet or a subtype, checked by the caller)
/// holding `value`.
pub fn new_object(py: Python<'_>, tp: *mut ffi::PyTypeObject, value: Greenlet) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: `tp` is a live greenlet (sub)type whose instances are at least
    // BASIC_SIZE bytes (check_subtype, or the greenlet type itself). tp_alloc
    // returns zeroed, GC-tracked memory and runs no code after tracking it
    // (PyType_GenericAlloc, which every type here inherits unless a C
    // subclass brings its own), so the contents are written before the
    // collector or any other code can look at them. The contents of a fresh
    // object are uninitialised as far as Rust is concerned: `write`, not an
    // assignment, so nothing is dropped. The abstract-type path only fills
    // an object object.__new__ accepted (it refuses abstract types, so in
    // practice it returns NULL), keeping the dict it may have stored.
    unsafe {
        if ffi::PyType_HasFeature(tp, ffi::Py_TPFLAGS_IS_ABSTRACT) != 0 {
            // object.__new__ owns the "Can't instantiate abstract class"
            // error; greenlet's tp_new goes through it, so this does too.
            let new = ffi::PyBaseObject_Type.tp_new.expect("object has tp_new");
            let obj = new(tp, pyo3::types::PyTuple::empty(py).as_ptr(), std::ptr::null_mut());
            if obj.is_null() {
                drop(value);
                return Err(PyErr::fetch(py));
            }
            // Not refused after all: keep the dict it may have made.
            let dict = *(obj.cast::<u8>().add(DICT_OFFSET).cast::<*mut ffi::PyObject>());
            std::ptr::addr_of_mut!((*obj.cast::<PyGreenlet>()).contents).write(value);
            *(obj.cast::<u8>().add(DICT_OFFSET).cast::<*mut ffi::PyObject>()) = dict;
            return Ok(obj);
        }
        let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        let obj = alloc(tp, 0);
        if obj.is_null() {
            drop(value);
            return Err(PyErr::fetch(py));
        }
        std::ptr::addr_of_mut!((*obj.cast::<PyGreenlet>()).contents).write(value);
        Ok(obj)
    }
}

/// The type's `tp_new` (see the module docs): greenlet's `green_new`, which
/// ignores its arguments (`__init__` takes `run` and `parent`).
unsafe extern "C" fn tp_new(subtype: *mut ffi::PyTypeObject, _args: *mut ffi::PyObject, _kwds: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls tp_new with the GIL and a live type; attached, so
    // references dropped in here are released at once.
    unsafe {
        Python::attach_unchecked(|py| {
            let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let cls = Bound::from_borrowed_ptr(py, subtype.cast()).cast_into_unchecked::<PyType>();
                check_subtype(&cls)?;
                new_object(py, subtype, Greenlet::new_value(py)?)
            }));
            match made {
                Ok(Ok(obj)) => obj,
                Ok(Err(e)) => {
                    e.restore(py);
                    std::ptr::null_mut()
                }
                Err(_) => {
                    pyo3::exceptions::PySystemError::new_err("weft: panic while creating a greenlet").restore(py);
                    std::ptr::null_mut()
                }
            }
        })
    }
}
