//! Type slots PyO3 does not generate for us, installed once on the greenlet
//! type right after it is created (subclasses inherit them):
//! * `tp_finalize` (PEP 442): dropping the last reference to a suspended
//!   greenlet kills it with GreenletExit in its own thread; the object is
//!   alive (resurrected) while that runs.
//! * `tp_dealloc`: greenlet's order (weak references, dict, state, memory;
//!   not PyO3's dealloc, see `dealloc`), preceded by the finalizer call PEP
//!   442 asks for, and by a kill on every later dealloc of a greenlet still
//!   suspended (see `finalize_again`; it is also how Python subclasses get
//!   killed).
//! * `tp_is_gc` (CPython < 3.15): a suspended greenlet is not garbage: only
//!   its own frames know what it references, so the collector must leave it
//!   alone.
//! * `tp_traverse` (CPython 3.15+, where the interpreter exports a visit of a
//!   frame's value stack): PyO3's, then the references held by a suspended
//!   greenlet's frames. A suspended greenlet is then ordinary garbage, as in
//!   greenlet on 3.15: a cycle through it is broken by its finalizer (a kill).
use std::os::raw::c_int;
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;

use super::{Greenlet, Status};

static PYO3_TRAVERSE: OnceLock<ffi::traverseproc> = OnceLock::new();

pub fn install(py: Python<'_>) -> PyResult<()> {
    let tp = py.get_type::<Greenlet>().as_type_ptr();
    // SAFETY: the type was just created and has no instances or subclasses yet;
    // PyType_Modified invalidates any cached slot lookups.
    unsafe {
        (*tp).tp_dealloc = Some(dealloc);
        (*tp).tp_finalize = Some(finalize);
        if weft_pystate::frames_traversable() {
            let Some(orig) = (*tp).tp_traverse else {
                return Err(pyo3::exceptions::PyImportError::new_err("weft: greenlet type has no tp_traverse"));
            };
            if PYO3_TRAVERSE.set(orig).is_err() && PYO3_TRAVERSE.get() != Some(&orig) {
                return Err(pyo3::exceptions::PyImportError::new_err("weft: greenlet type created twice"));
            }
            (*tp).tp_traverse = Some(traverse);
        } else {
            (*tp).tp_is_gc = Some(is_gc);
        }
        ffi::PyType_Modified(tp);
    }
    Ok(())
}

/// The `Greenlet` fields of the object `*obj`, borrowed for as long as the
/// caller's `obj` binding.
///
/// # Safety
/// The GIL is held; `*obj` points to a live instance of the greenlet type or a
/// subclass (as it does in every slot of that type, where CPython passes the
/// instance), and it stays allocated (not yet freed by the dealloc) for as
/// long as the returned reference is used.
unsafe fn payload(obj: &*mut ffi::PyObject) -> &Greenlet {
    // SAFETY: the contract: with the GIL, `*obj` is a live greenlet instance,
    // so the unchecked cast is to its real type, and the object (whose
    // `Greenlet` part never moves: frozen pyclass) outlives the borrow.
    unsafe {
        let py = Python::assume_attached();
        let b = pyo3::Borrowed::from_ptr(py, *obj).cast_unchecked::<Greenlet>();
        &*(b.get() as *const Greenlet)
    }
}

unsafe extern "C" fn dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: called by CPython as tp_dealloc with refcount 0 and the GIL
    // (directly, or as the base dealloc at the end of a Python subclass's
    // subtype_dealloc, which has re-tracked the object for us). The
    // weakreflist and dict fields hold owned references or null, and nothing
    // else reaches them once the refcount is 0.
    unsafe {
        // Our finalizer may run below (PEP 442 runs it once per object, and a
        // Python subclass's type has none); it says so in `finalizer_ran`.
        // (`obj` is a greenlet instance still allocated until `free` below:
        // `payload`'s contract, for this and the calls that follow.)
        payload(&obj).coro().finalizer_ran.set(false);
        if ffi::PyObject_CallFinalizerFromDealloc(obj) < 0 {
            return; // resurrected: queued for a kill in its own thread
        }
        if !payload(&obj).coro().finalizer_ran.get() && finalize_again(obj) {
            return; // resurrected
        }
        // One left suspended by an exited thread cannot be killed: retired.
        // That may run Python code (see retire_orphan), so the object leaves
        // the collector first, as PyO3's dealloc would make it do next.
        ffi::PyObject_GC_UnTrack(obj.cast());
        // Attached (not just holding the GIL), so what it drops goes now.
        Python::attach_unchecked(|_| super::switch::retire_orphan(payload(&obj), obj));
        // What greenlet's dealloc does from here: weak references first,
        // then the dict (greenlet.h's slots, which PyO3 does not know of:
        // layout.rs), then our state (all three by `Greenlet`'s drop, so
        // that any path that drops the contents does them), then the memory.
        let contents = std::ptr::addr_of_mut!((*obj.cast::<super::layout::PyGreenlet>()).contents);
        Python::attach_unchecked(|py| {
            // Dropping the Coro releases Python objects; no panic may leave a
            // C slot.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| std::ptr::drop_in_place(contents))).is_err() {
                pyo3::exceptions::PySystemError::new_err("weft: panic while freeing a greenlet").write_unraisable(py, None);
            }
        });
        // Not PyO3's dealloc: it releases the instance's type unconditionally,
        // which is wrong when a static type (a C or Cython subclass compiled
        // against greenlet.h) is involved. See `releases_type`.
        let tp = ffi::Py_TYPE(obj);
        let release = releases_type(tp);
        let free = (*tp).tp_free.unwrap_or(ffi::PyObject_GC_Del);
        free(obj.cast());
        if release {
            ffi::Py_DECREF(tp.cast());
        }
    }
}

/// Whether this dealloc must release the instance's (heap) type. CPython's
/// rule: a heap type's instances hold a reference to it, released by the
/// dealloc. A Python subclass's subtype_dealloc releases it itself unless
/// its nearest non-Python base is a heap type (then that base's dealloc
/// does). So: the type is released here when every type from the
/// instance's up to greenlet's is a heap type (greenlet itself, or Python
/// subclasses of it); a static type in between (gevent's compiled Greenlet,
/// say) means either there is no reference to release (the instance is of
/// that static type) or subtype_dealloc releases it (a Python subclass of
/// it).
unsafe fn releases_type(tp: *mut ffi::PyTypeObject) -> bool {
    // SAFETY: called from tp_dealloc with the GIL; the greenlet type object
    // exists (it has instances) and lives for the whole process.
    let ours = <Greenlet as pyo3::PyTypeInfo>::type_object_raw(unsafe { Python::assume_attached() });
    let mut t = tp;
    while !t.is_null() {
        // SAFETY: `t` is the instance's live type or one of its bases.
        unsafe {
            if ffi::PyType_HasFeature(t, ffi::Py_TPFLAGS_HEAPTYPE) == 0 {
                return false;
            }
            if t == ours {
                return true;
            }
            t = (*t).tp_base;
        }
    }
    false
}

/// greenlet kills a suspended greenlet on every dealloc, not only the first:
/// PEP 442 runs a finalizer once, so a greenlet that refused to die (or a
/// Python subclass, whose type gets no `tp_finalize`: CPython resets the slot
/// of a class without `__del__`) is killed here, or queued for its thread, as
/// the finalizer would. Returns true if the object was resurrected.
///
/// Only the type's refcount stays as it is: a Python subclass's
/// subtype_dealloc leaves it to this (heap-type) base dealloc to release the
/// type, which the resurrected object keeps using.
///
/// # Safety
/// Called from the greenlet type's tp_dealloc, with the GIL, on the instance
/// being deallocated (refcount 0, not yet freed).
unsafe fn finalize_again(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: the contract: `obj` is a greenlet instance, allocated until the
    // dealloc that called us frees it, after we return.
    let c = unsafe { payload(&obj) }.coro();
    if c.status.get() != Status::Active || c.is_main || !c.thread_alive() {
        return false;
    }
    // SAFETY: tp_dealloc with the GIL; the object is still GC-tracked (PyO3's
    // dealloc untracks it later) and keeps its dict and weakrefs until then
    // (a subclass's subtype_dealloc leaves both to its base, which has them).
    // The temporary reference makes it alive while the kill runs Python code,
    // as PyObject_CallFinalizerFromDealloc does.
    unsafe {
        weft_pystate::set_refcnt(obj.cast(), 1);
        Python::attach_unchecked(|py| finalize_attached(py, obj));
        let left = ffi::Py_REFCNT(obj) - 1;
        weft_pystate::set_refcnt(obj.cast(), left);
        left > 0
    }
}

unsafe extern "C" fn finalize(obj: *mut ffi::PyObject) {
    // SAFETY: tp_finalize runs with the GIL on a live (possibly resurrected)
    // object. Entering PyO3's attached state (not just assuming the GIL) makes
    // references dropped in here be released now, not parked until later.
    unsafe { Python::attach_unchecked(|py| finalize_attached(py, obj)) }
}

/// # Safety
/// `obj` is a greenlet instance kept alive (a real or temporary reference) for
/// the whole call: tp_finalize's object, or one revived by `finalize_again`.
unsafe fn finalize_attached(py: Python<'_>, obj: *mut ffi::PyObject) {
    let saved = PyErr::take(py);
    // SAFETY: the contract; `py` proves the GIL.
    let g = unsafe { payload(&obj) };
    let c = g.coro();
    c.finalizer_ran.set(true);
    if c.status.get() == Status::Active && !c.is_main && c.thread_alive() {
        let here = super::belongs_here(c);
        // SAFETY: `obj` is alive for the duration of the finalizer.
        let bound = unsafe { Bound::from_borrowed_ptr(py, obj).cast_into_unchecked::<Greenlet>() };
        if here {
            super::switch::kill(py, &bound);
        } else {
            // Its own thread kills it; this reference keeps it alive until then.
            // The queue refuses it if the thread has exited meanwhile (a kill
            // queued as the thread exits is never stranded: weft-killq); the
            // dealloc that follows then retires the greenlet.
            // (Dropping a refused reference cannot free `obj`: the finalizer's
            // own reference outlives this call.)
            if let Err(refused) = c.thread().kills.push(bound.unbind()) {
                drop(refused);
            }
        }
    }
    if let Some(e) = saved {
        e.restore(py);
    }
}

unsafe extern "C" fn traverse(obj: *mut ffi::PyObject, visit: ffi::visitproc, arg: *mut std::os::raw::c_void) -> c_int {
    // SAFETY: called by the GC as tp_traverse, with the GIL.
    let r = unsafe { (PYO3_TRAVERSE.get().expect("installed"))(obj, visit, arg) };
    if r != 0 {
        return r;
    }
    // SAFETY: tp_traverse of the greenlet type: the GC passes a live instance
    // (of it or a subclass) and holds the GIL for the whole traversal.
    let Some(c) = unsafe { payload(&obj) }.coro_if_any() else { return 0 };
    // Suspended: started, not finished, and not the one running in its thread.
    // A greenlet of a dead thread keeps its frames out of the collector's view:
    // nothing can ever release what they hold.
    let suspended = c.status.get() == Status::Active
        && c.thread_alive()
        && !c.thread_is_running(obj);
    if !suspended {
        return 0;
    }
    // SAFETY: the same C function type; the two declarations differ only in
    // naming the object pointer `PyObject *` or `void *`.
    let visit = unsafe { std::mem::transmute::<ffi::visitproc, weft_pystate::Visit>(visit) };
    // SAFETY: GIL held; the blob holds the saved state of a suspended
    // greenlet; it is borrowed for the walk only, which runs no Python code
    // (the collector's `visit` only counts or marks), so no other reference
    // to it is formed meanwhile (`Coro`'s rule).
    unsafe { (*c.state_ptr()).traverse_frames(visit, arg) }
}

unsafe extern "C" fn is_gc(obj: *mut ffi::PyObject) -> c_int {
    // SAFETY: tp_is_gc of the greenlet type: the GC asks it about a live
    // instance (of it or a subclass), with the GIL.
    let Some(c) = unsafe { payload(&obj) }.coro_if_any() else { return 1 };
    let suspended = c.status.get() == Status::Active && !c.is_main && c.thread_alive();
    (!suspended) as c_int
}
