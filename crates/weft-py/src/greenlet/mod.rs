//! `greenlet`: coroutines that switch whole Python call stacks, with greenlet
//! 3.x semantics. The stack bytes are moved by `weft-stack`, the interpreter
//! state by `weft-pystate`; this module decides who runs and what is passed.
mod capi;
mod layout;
pub(crate) mod switch;
pub(crate) mod testing;
mod thread;
mod typeslots;

use std::cell::{Cell, UnsafeCell};
use std::sync::Arc;

use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{ffi, PyTraverseError, PyVisit};

use weft_pystate::Blob;
use weft_stack::Slice;

pub(crate) use thread::{thread_data, Passing, ThreadData, ThreadRecord};


pyo3::create_exception!(greenlet, GreenletExit, pyo3::exceptions::PyBaseException, "Raised in a greenlet to kill it; a greenlet that does not catch it exits quietly.");
#[allow(non_camel_case_types)]
mod errtype {
    pyo3::create_exception!(greenlet, error, pyo3::exceptions::PyException, "A switch that cannot be done: another thread's greenlet, or a corrupted state.");
}
pub(crate) use errtype::error;

pub(crate) fn error_new(msg: &str) -> PyErr {
    error::new_err(msg.to_owned())
}

/// What happens when a coroutine's body returns: the policy the engine is
/// handed for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Finish {
    /// greenlet's rule: the first live parent gets the result.
    Parent,
    /// A tasklet's: its scheduler picks who runs next (`stackless::body_done`).
    Scheduler,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Status {
    Unstarted,
    /// Running or suspended: it has a stack.
    Active,
    Dead,
}

/// The state behind one greenlet object. It lives in its own heap block,
/// reached through the object's `pimpl` pointer (greenlet.h's layout); the
/// block never moves while the object lives, so its `Slice` can sit on the
/// stack chain.
///
/// # Access rule: shared references only
/// The only way to a `Coro` from a greenlet is `Greenlet::coro(&self) ->
/// &Coro`; no `&mut Coro` exists while the object lives (only its dealloc
/// owns it, see `Drop`). The GIL serialises threads, but not re-entry on one
/// thread: nearly any Python call, a reference drop that runs `__del__` or a
/// weakref callback, an allocation that starts a collection (which calls
/// `tp_traverse`), or a switch can run code that reaches the same greenlet
/// and reads or changes its state. A `&mut Coro` live across that would
/// alias whatever the re-entering code forms: undefined behaviour, however
/// short the borrow looks at its call site. So every mutable field is a cell:
/// * Copy values (`status`, `finalizer_ran`, `orphaned`, `finish`, `fault`):
///   `Cell`.
/// * Python references (`parent`, `run`, `call`): `PySlot`, whose `set` and
///   `replace` move the old value out before it is dropped, so a `__del__`
///   that re-enters finds the new value in place, never a half-updated one.
/// * `thread`: replaced only by `set_thread` (an unstarted greenlet follows
///   its new parent's thread); read through methods whose borrow ends inside
///   them and runs no Python (`thread_is`, `thread_alive`, ...), or cloned.
/// * `slice` and `state`, moved by the switch machinery (the slice sits on
///   the thread's stack chain by address): `UnsafeCell`s reached by
///   `slice_ptr` and `state_ptr`. A reference into either is formed only for
///   one call that runs no Python code (a save, a restore, a mark); calls
///   that may run Python, or that switch, take the raw pointer (see
///   `weft_pystate::Blob::clear`, `weft_stack::switch`).
/// * `is_main`: plain, fixed at construction.
pub(crate) struct Coro {
    slice: UnsafeCell<Slice>,
    state: UnsafeCell<Blob>,
    pub status: Cell<Status>,
    pub is_main: bool,
    pub parent: PySlot<Py<Greenlet>>,
    pub run: PySlot<Py<PyAny>>,
    thread: UnsafeCell<Arc<ThreadRecord>>,
    /// Set by the finalizer; lets the dealloc tell whether it ran this time.
    pub finalizer_ran: Cell<bool>,
    /// Left suspended by a thread that has exited, and retired since.
    pub orphaned: Cell<bool>,
    /// The `run` call in progress (callable, args, kwargs), owned here rather
    /// than by the greenlet's C stack, so that a greenlet that never returns
    /// from it (its thread exited) still releases them, and the collector sees
    /// them.
    pub call: PySlot<RunCall>,
    /// Who runs when the body returns.
    pub finish: Cell<Finish>,
    /// A failure injected into switches to this coroutine, by tests only
    /// (`weft._weft._testing`, testing.rs).
    pub fault: Cell<testing::Fault>,
}

/// An optional owned value holding Python references, inside a `Coro`: a
/// `Cell`, so that it is only ever moved in or out whole (see `Coro`'s access
/// rule), never borrowed across code that may reach it again.
pub(crate) struct PySlot<V>(Cell<Option<V>>);

impl<V> PySlot<V> {
    pub(crate) const fn new(v: Option<V>) -> Self {
        PySlot(Cell::new(v))
    }

    /// Puts `v` in and hands back the old value, for the caller to drop.
    pub(crate) fn replace(&self, v: Option<V>) -> Option<V> {
        self.0.replace(v)
    }

    /// Puts `v` in, then drops the old value: code its drop runs sees `v`.
    pub(crate) fn set(&self, v: Option<V>) {
        drop(self.0.replace(v));
    }

    /// A borrow of the value, for the collector's tp_traverse.
    ///
    /// # Safety
    /// Nothing may `take`, `replace` or `set` the slot while the borrow is
    /// used: the caller runs no Python code meanwhile (the collector's visit
    /// callbacks run none).
    pub(crate) unsafe fn peek(&self) -> Option<&V> {
        // SAFETY: the contract: the slot is not written while the borrow
        // lives, so the shared reference aliases no write.
        unsafe { (*self.0.as_ptr()).as_ref() }
    }
}

impl<T> PySlot<Py<T>> {
    /// A new reference to the value. `clone_ref` only increments a refcount,
    /// so no Python code runs while the value is borrowed.
    pub(crate) fn get(&self, py: Python<'_>) -> Option<Py<T>> {
        // SAFETY: as `peek`'s contract asks: clone_ref runs no Python code,
        // so nothing writes the slot while the borrow lives.
        unsafe { self.peek() }.map(|p| p.clone_ref(py))
    }
}

impl Coro {
    /// The stack slice, for the switch machinery. Dereferenced only for a
    /// call that runs no Python code, or passed on raw (see the access rule).
    pub(crate) fn slice_ptr(&self) -> *mut Slice {
        self.slice.get()
    }

    /// The saved interpreter state; as for `slice_ptr`.
    pub(crate) fn state_ptr(&self) -> *mut Blob {
        self.state.get()
    }

    /// Bytes of this coroutine's stack saved on the heap.
    pub(crate) fn saved_bytes(&self) -> usize {
        // SAFETY: a shared borrow for one read that runs no code; every
        // `&mut Slice` is formed only for a call that runs no Python code
        // and does not come here (the access rule), so none is live.
        unsafe { (*self.slice.get()).saved_bytes() }
    }

    /// The thread record (a new reference to it).
    pub(crate) fn thread(&self) -> Arc<ThreadRecord> {
        // SAFETY: a shared borrow for the clone (an atomic increment, no
        // code); `thread` is written only by `set_thread`, which nothing
        // can reach meanwhile.
        unsafe { (*self.thread.get()).clone() }
    }

    /// Whether this coroutine belongs to the thread of `record`.
    pub(crate) fn thread_is(&self, record: &Arc<ThreadRecord>) -> bool {
        // SAFETY: as in `thread`: a pointer comparison.
        Arc::ptr_eq(unsafe { &*self.thread.get() }, record)
    }

    /// Whether this coroutine's thread still runs.
    pub(crate) fn thread_alive(&self) -> bool {
        // SAFETY: as in `thread`: `alive` is one atomic load.
        unsafe { (*self.thread.get()).alive() }
    }

    /// Whether `obj` (this coroutine's object) runs in its thread.
    pub(crate) fn thread_is_running(&self, obj: *const ffi::PyObject) -> bool {
        // SAFETY: as in `thread`: `is_running` is one atomic load.
        unsafe { (*self.thread.get()).is_running(obj) }
    }

    /// Moves an unstarted coroutine to `thread`'s (its new parent's).
    pub(crate) fn set_thread(&self, thread: Arc<ThreadRecord>) {
        // SAFETY: no borrow of the field outlives the methods above, none of
        // which runs code that could come here; the old record is moved out
        // before it is dropped (its drop cannot reach this coroutine).
        let old = unsafe { std::ptr::replace(self.thread.get(), thread) };
        drop(old);
    }
}

/// A `run` call: the callable, its args and its kwargs.
pub type RunCall = (Py<PyAny>, Py<PyTuple>, Option<Py<PyDict>>);

/// A greenlet object's fields after `PyObject_HEAD`, in greenlet.h's order:
/// instances are greenlet.h's `PyGreenlet` (see `layout.rs`), so C and Cython
/// subclasses compiled against greenlet.h lay their own fields out after ours.
/// PyO3 puts a frozen, `Sync` class's contents right after the object header
/// with nothing else (no borrow flag, no thread checker); `layout::install`
/// checks that at import and points `tp_weaklistoffset` and `tp_dictoffset`
/// at the first two fields.
#[repr(C)]
#[pyclass(module = "greenlet", name = "greenlet", subclass, frozen)]
pub struct Greenlet {
    /// `PyGreenlet.weakreflist`: CPython's weak-reference list head.
    pub(crate) weakreflist: UnsafeCell<*mut ffi::PyObject>,
    /// `PyGreenlet.dict`: the instance dict (owned, or null until first use).
    pub(crate) dict: UnsafeCell<*mut ffi::PyObject>,
    /// `PyGreenlet.pimpl`: all of weft's own state, a `Box<Coro>`
    /// made by `with_thread` and freed by `Drop`. Never null in an object
    /// whose contents were written; the collector's slots still check (see
    /// `coro_if_any`), as an object could be seen zeroed if it were ever
    /// made other than by `layout::new_object`.
    pimpl: *mut Coro,
}

// SAFETY: every access to the fields and to the `Coro` behind `pimpl` (whose
// cells are not `Sync` by themselves) happens with the GIL held, which orders
// accesses from different threads; switches check that the greenlet belongs
// to the running thread before touching its stack.
unsafe impl Sync for Greenlet {}
// SAFETY: as above; `weakreflist` and `dict` are Python references touched
// only with the GIL; raw pointers inside `Slice` are only followed by the
// owning thread.
unsafe impl Send for Greenlet {}

impl Drop for Greenlet {
    /// greenlet's order: weak references, the dict, then weft's state. Runs
    /// from the object's dealloc (typeslots.rs), or for a value that never
    /// became an object (then both fields are null).
    fn drop(&mut self) {
        if !self.weakreflist.get_mut().is_null() {
            // Non-null only inside an object: the contents follow the header.
            let obj = (self as *mut Greenlet).cast::<u8>().wrapping_sub(layout::CONTENTS_OFFSET).cast::<ffi::PyObject>();
            // SAFETY: dropped inside tp_dealloc with the GIL (refcount 0);
            // `obj` is the object these contents sit in (layout.rs), and
            // clearing weak references there is what CPython expects.
            unsafe { ffi::PyObject_ClearWeakRefs(obj) };
        }
        let dict = std::mem::replace(self.dict.get_mut(), std::ptr::null_mut());
        if !dict.is_null() {
            // SAFETY: contents are dropped with the GIL held (tp_dealloc);
            // `dict` is the reference this object owned.
            unsafe { ffi::Py_DECREF(dict) };
        }
        if !self.pimpl.is_null() {
            // SAFETY: `pimpl` was made by `Box::into_raw` in `with_thread` and
            // is freed only here, once: the object is being destroyed (or
            // never existed).
            drop(unsafe { Box::from_raw(self.pimpl) });
        }
    }
}

impl Greenlet {
    /// The coroutine state: a shared reference, its fields cells (see
    /// `Coro`'s access rule), so it may be held across anything.
    pub(crate) fn coro(&self) -> &Coro {
        // SAFETY: `pimpl` is the live box made in `with_thread`, freed only
        // by `Drop`, after the last use (`&self` outlives no such drop), and
        // never null in an object made by `layout::new_object`; no `&mut`
        // to the box exists while the object lives (only `Drop` owns it).
        unsafe { &*self.pimpl }
    }

    /// The coroutine state, or None for contents never written (a zeroed
    /// object): for the collector's slots, which may see any tracked object.
    pub(crate) fn coro_if_any(&self) -> Option<&Coro> {
        // SAFETY: as in `coro`, when not null.
        unsafe { self.pimpl.as_ref() }
    }

    fn with_thread(thread: Arc<ThreadRecord>, is_main: bool, parent: Option<Py<Greenlet>>) -> Self {
        let slice = if is_main { Slice::new_main() } else { Slice::new() };
        let coro = Box::new(Coro {
            slice: UnsafeCell::new(slice),
            state: UnsafeCell::new(Blob::default()),
            status: Cell::new(if is_main { Status::Active } else { Status::Unstarted }),
            is_main,
            parent: PySlot::new(parent),
            run: PySlot::new(None),
            thread: UnsafeCell::new(thread),
            finalizer_ran: Cell::new(false),
            orphaned: Cell::new(false),
            call: PySlot::new(None),
            finish: Cell::new(Finish::Parent),
            fault: Cell::new(testing::Fault::None),
        });
        Greenlet {
            weakreflist: UnsafeCell::new(std::ptr::null_mut()),
            dict: UnsafeCell::new(std::ptr::null_mut()),
            pimpl: Box::into_raw(coro),
        }
    }

    pub(crate) fn new_main(py: Python<'_>, thread: Arc<ThreadRecord>) -> PyResult<Py<Greenlet>> {
        let tp = py.get_type::<Greenlet>().as_type_ptr();
        let obj = layout::new_object(py, tp, Greenlet::with_thread(thread, true, None))?;
        // SAFETY: a new reference to a greenlet object.
        Ok(unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked::<Greenlet>() }.unbind())
    }

    /// The contents of a new (unstarted) greenlet of this thread, whose
    /// parent is the running greenlet.
    fn new_value(py: Python<'_>) -> PyResult<Greenlet> {
        let td = thread_data(py)?;
        // SAFETY: this thread's live data. As in greenlet, creating a greenlet
        // is one of the points where this thread kills the greenlets whose
        // last reference another thread dropped.
        let (record, parent) = unsafe {
            switch::drain_pending_kills(py, td);
            ((*td).record.clone(), (*td).current.clone_ref(py))
        };
        Ok(Greenlet::with_thread(record, false, Some(parent)))
    }

    /// A coroutine of this thread for a tasklet: unstarted, its parent the
    /// thread's main greenlet (used only if the scheduler hands it back to
    /// greenlet's rules), finishing through the scheduler.
    pub(crate) fn new_for_scheduler(py: Python<'_>, td: *mut ThreadData) -> PyResult<Py<Greenlet>> {
        // SAFETY: `td` is this thread's live data (from `thread_data`).
        let (record, main) = unsafe { ((*td).record.clone(), (*td).main.clone_ref(py)) };
        let g = Greenlet::with_thread(record, false, Some(main));
        g.coro().finish.set(Finish::Scheduler);
        let tp = py.get_type::<Greenlet>().as_type_ptr();
        let obj = layout::new_object(py, tp, g)?;
        // SAFETY: a new reference to a greenlet object.
        Ok(unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked::<Greenlet>() }.unbind())
    }
}

pub(crate) fn getcurrent_py(py: Python<'_>) -> PyResult<Py<Greenlet>> {
    let td = thread_data(py)?;
    // SAFETY: thread_data returns this thread's live data.
    unsafe {
        switch::drain_pending_kills(py, td);
        Ok((*td).current.clone_ref(py))
    }
}

fn is_current(py: Python<'_>, g: &Greenlet) -> bool {
    match thread::thread_data_if_any() {
        // SAFETY: this thread's live data.
        Some(td) => std::ptr::eq(unsafe { (*td).current.get() }, g) && { let _ = py; true },
        None => false,
    }
}

/// True if `g` is the running greenlet of another, live thread.
fn running_elsewhere(g: &Bound<'_, Greenlet>) -> bool {
    let c = g.get().coro();
    !belongs_here(c)
        && c.thread_alive()
        && c.thread_is_running(g.as_ptr())
}

/// True if the greenlet is bound to the calling thread.
pub(crate) fn belongs_here(c: &Coro) -> bool {
    match thread::thread_data_if_any() {
        // SAFETY: this thread's live data.
        Some(td) => c.thread_is(unsafe { &(*td).record }),
        None => false,
    }
}

/// greenlet's rule for what `switch()` returns: nothing -> (), one positional
/// -> it, several -> the tuple, keywords only -> the dict, both -> (args, kwargs).
fn single_result(py: Python<'_>, args: Py<PyTuple>, kwargs: Option<Py<PyDict>>) -> Py<PyAny> {
    let kwargs = kwargs.filter(|k| !k.bind(py).is_empty());
    let a = args.bind(py);
    match (a.len(), kwargs) {
        (1, None) => a.get_item(0).expect("len 1").unbind(),
        (_, None) => args.into_any(),
        (0, Some(k)) => k.into_any(),
        (_, Some(k)) => PyTuple::new(py, [args.into_any(), k.into_any()]).expect("pair").into_any().unbind(),
    }
}

fn deliver(py: Python<'_>, passing: Passing) -> PyResult<Py<PyAny>> {
    match passing {
        Passing::Args(a, k) => Ok(single_result(py, a, k)),
        Passing::Raise(e) => Err(e),
        Passing::Empty => Ok(py.None()),
    }
}

/// Builds the exception `throw(typ, val, tb)` raises, with greenlet's checks.
pub(crate) fn make_throw(py: Python<'_>, typ: &Bound<'_, PyAny>, val: &Bound<'_, PyAny>, tb: &Bound<'_, PyAny>) -> PyResult<PyErr> {
    if !tb.is_none() && !tb.is_instance_of::<pyo3::types::PyTraceback>() {
        return Err(PyTypeError::new_err("throw() third argument must be a traceback object"));
    }
    let exc = if let Ok(t) = typ.cast::<PyType>() {
        if !t.is_subclass_of::<pyo3::exceptions::PyBaseException>()? {
            return Err(PyTypeError::new_err(format!("exceptions must be classes, or instances, not {}", t.name()?)));
        }
        if val.is_instance(t)? {
            val.clone()
        } else if val.is_none() {
            t.call0()?
        } else if let Ok(tup) = val.cast::<PyTuple>() {
            t.call1(tup.clone())?
        } else {
            t.call1((val,))?
        }
    } else if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        if !val.is_none() {
            return Err(PyTypeError::new_err("instance exception may not have a separate value"));
        }
        typ.clone()
    } else {
        return Err(PyTypeError::new_err(format!(
            "exceptions must be classes, or instances, not {}",
            typ.get_type().name()?
        )));
    };
    let err = PyErr::from_value(exc);
    if !tb.is_none() {
        err.set_traceback(py, Some(tb.cast::<pyo3::types::PyTraceback>()?.clone()));
    }
    Ok(err)
}

fn check_parent(py: Python<'_>, slf: &Bound<'_, Greenlet>, p: &Bound<'_, Greenlet>) -> PyResult<()> {
    let mut cur = Some(p.clone().unbind());
    // The thread of the chain's last greenlet (its root, a main greenlet):
    // greenlet's parent setter compares a started greenlet's thread with that
    // one, not with `p`'s own, which for an unstarted `p` is only where it
    // was headed when its parent was last set (its chain may have moved to
    // another thread since).
    let mut root_thread = p.get().coro().thread();
    while let Some(g) = cur {
        if g.is(slf) {
            return Err(PyValueError::new_err("cyclic parent chain"));
        }
        root_thread = g.get().coro().thread();
        cur = g.get().coro().parent.get(py);
    }
    let c = slf.get().coro();
    if c.status.get() == Status::Unstarted {
        // Not bound to a thread until it starts: it will run in its parent's.
        c.set_thread(p.get().coro().thread());
    } else if !c.thread_is(&root_thread) {
        return Err(PyValueError::new_err("parent cannot be on a different thread"));
    }
    Ok(())
}

#[pymethods]
impl Greenlet {
    /// Never called: the type's tp_new is `layout::tp_new` (installed at
    /// import), which makes instances with greenlet.h's layout. Declared so
    /// that PyO3 makes the type instantiable.
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(cls: &Bound<'_, PyType>, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        layout::check_subtype(cls)?;
        Greenlet::new_value(cls.py())
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        // Parsed by hand so that an explicit `run=None` is kept (greenlet
        // then reports `g.run` as None) while an omitted one is not.
        if args.len() > 2 {
            return Err(PyTypeError::new_err(format!("greenlet() takes at most 2 arguments ({} given)", args.len())));
        }
        let mut run = args.get_item(0).ok();
        let mut parent = args.get_item(1).ok();
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                match k.extract::<String>()?.as_str() {
                    "run" if run.is_none() => run = Some(v),
                    "parent" if parent.is_none() => parent = Some(v),
                    "run" | "parent" => {
                        return Err(PyTypeError::new_err(format!("argument for greenlet() given by name ('{k}') and position")))
                    }
                    other => return Err(PyTypeError::new_err(format!("'{other}' is an invalid keyword argument for greenlet()"))),
                }
            }
        }
        if let Some(r) = run {
            Greenlet::set_run(slf, r)?;
        }
        if let Some(p) = parent.filter(|p| !p.is_none()) {
            Greenlet::set_parent(slf, p)?;
        }
        Ok(())
    }

    #[classattr]
    #[pyo3(name = "GreenletExit")]
    fn class_greenlet_exit(py: Python<'_>) -> Py<PyType> {
        py.get_type::<GreenletExit>().unbind()
    }

    #[classattr]
    #[pyo3(name = "error")]
    fn class_error(py: Python<'_>) -> Py<PyType> {
        py.get_type::<error>().unbind()
    }

    #[staticmethod]
    #[pyo3(name = "getcurrent")]
    fn static_getcurrent(py: Python<'_>) -> PyResult<Py<Greenlet>> {
        getcurrent_py(py)
    }

    /// Switches to this greenlet, passing the arguments; returns what is passed
    /// back when something switches to the caller again.
    #[pyo3(signature = (*args, **kwargs))]
    fn switch(slf: &Bound<'_, Self>, args: Bound<'_, PyTuple>, kwargs: Option<Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let passing = Passing::Args(args.unbind(), kwargs.map(|k| k.unbind()));
        switch::switch_to(py, slf, passing)
    }

    /// Switches to this greenlet and raises `typ(val)` there (GreenletExit by default).
    #[pyo3(signature = (typ=None, val=None, tb=None))]
    fn throw(slf: &Bound<'_, Self>, typ: Option<Bound<'_, PyAny>>, val: Option<Bound<'_, PyAny>>, tb: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let none = py.None().into_bound(py);
        let typ = typ.unwrap_or_else(|| py.get_type::<GreenletExit>().into_any());
        let err = make_throw(py, &typ, val.as_ref().unwrap_or(&none), tb.as_ref().unwrap_or(&none))?;
        let was_dead = slf.get().coro().status.get() == Status::Dead;
        let r = switch::switch_to(py, slf, Passing::Raise(err));
        if was_dead {
            // greenlet: throwing into a dead greenlet lands in its parent; a
            // GreenletExit there is turned into a plain return.
            return switch::handle_exit(py, r);
        }
        r
    }

    #[getter]
    fn dead(slf: &Bound<'_, Self>) -> bool {
        let g = slf.get();
        switch::retire_orphan(g, slf.as_ptr());
        let c = g.coro();
        let status = c.status.get();
        status == Status::Dead || (status == Status::Active && !c.thread_alive())
    }

    pub(crate) fn __bool__(&self) -> bool {
        let c = self.coro();
        c.status.get() == Status::Active && c.thread_alive()
    }

    #[getter(run)]
    fn get_run(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let c = slf.get().coro();
        match (c.status.get(), c.run.get(slf.py())) {
            (Status::Unstarted, Some(r)) => Ok(r),
            _ => Err(PyAttributeError::new_err("run")),
        }
    }

    #[setter(run)]
    fn set_run(slf: &Bound<'_, Self>, run: Bound<'_, PyAny>) -> PyResult<()> {
        let c = slf.get().coro();
        if c.status.get() != Status::Unstarted {
            return Err(PyAttributeError::new_err("run cannot be set after the start of the greenlet"));
        }
        // The old `run` may run `__del__`, which finds the new one in place.
        c.run.set(Some(run.unbind()));
        Ok(())
    }

    #[deleter(parent)]
    fn del_parent(&self) -> PyResult<()> {
        Err(PyAttributeError::new_err("can't delete attribute"))
    }

    #[deleter(run)]
    fn del_run(&self) -> PyResult<()> {
        let c = self.coro();
        if c.status.get() != Status::Unstarted {
            return Err(PyAttributeError::new_err("run cannot be set after the start of the greenlet"));
        }
        c.run.set(None); // as in set_run: `__del__` finds it gone
        Ok(())
    }

    #[deleter(gr_context)]
    fn del_gr_context(&self) -> PyResult<()> {
        Err(PyAttributeError::new_err("can't delete context attribute"))
    }

    #[getter(parent)]
    pub(crate) fn get_parent(&self, py: Python<'_>) -> Option<Py<Greenlet>> {
        self.coro().parent.get(py)
    }

    #[setter(parent)]
    pub(crate) fn set_parent(slf: &Bound<'_, Self>, parent: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let p = parent.cast::<Greenlet>().map_err(|_| {
            PyTypeError::new_err(format!(
                "GreenletChecker: Expected any type of greenlet, not {}",
                parent.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        if slf.get().coro().is_main {
            return Err(PyAttributeError::new_err("cannot set the parent of a main greenlet"));
        }
        check_parent(py, slf, p)?;
        // The old parent's drop may run code that finds the new one in place.
        slf.get().coro().parent.set(Some(p.clone().unbind()));
        Ok(())
    }

    #[getter]
    fn gr_frame(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let g = slf.get();
        let c = g.coro();
        // A greenlet of another thread (alive or exited) that is suspended
        // there has its frames saved like one of ours (in heap chunks, with
        // 3.12+'s C-stack links already bypassed), so greenlet's gr_frame works
        // for it too. One running there, or running when its thread exited,
        // has no saved frames.
        if c.status.get() != Status::Active || is_current(py, g) || c.thread_is_running(slf.as_ptr()) {
            return Ok(py.None());
        }
        switch::suspended_top_frame(py, g)
    }

    #[getter]
    fn gr_context(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let g = slf.get();
        let c = g.coro();
        let ptr = if is_current(py, g) {
            // SAFETY: GIL held, our own thread state.
            unsafe { weft_pystate::thread_context(ffi::PyThreadState_Get().cast()) }
        } else {
            if running_elsewhere(slf) {
                return Err(PyValueError::new_err("cannot get context of a greenlet that is running in a different thread"));
            }
            // SAFETY: `Blob::context`'s contract is the GIL, which `py` proves;
            // the greenlet is not running here or elsewhere (checked above), so
            // its saved context in the blob is the one to read; the blob is
            // borrowed only for this call, one read that runs no code, so no
            // other reference to it is formed meanwhile (`Coro`'s rule).
            unsafe { (*c.state_ptr()).context() }
        };
        // SAFETY: a borrowed reference (or null) from the thread state or blob.
        Ok(unsafe { Bound::from_borrowed_ptr_or_opt(py, ptr.cast()) }.map(|b| b.unbind()).unwrap_or_else(|| py.None()))
    }

    #[setter]
    fn set_gr_context(slf: &Bound<'_, Self>, ctx: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let ptr = if ctx.is_none() {
            std::ptr::null_mut()
        } else {
            // SAFETY: type check on a live object.
            if unsafe { ffi::PyContext_CheckExact(ctx.as_ptr()) } == 0 {
                return Err(PyTypeError::new_err("greenlet context must be a contextvars.Context or None"));
            }
            ctx.as_ptr()
        };
        let g = slf.get();
        let c = g.coro();
        if is_current(py, g) {
            // SAFETY: GIL held, our own thread state.
            unsafe { weft_pystate::set_thread_context(ffi::PyThreadState_Get().cast(), ptr.cast()) };
        } else if running_elsewhere(slf) {
            return Err(PyValueError::new_err("cannot set context of a greenlet that is running in a different thread"));
        } else {
            // SAFETY: `Blob::set_context`'s contract is the GIL, which `py`
            // proves; the greenlet runs nowhere (checked above), so the blob
            // holds its context, and `ptr` is a live Context or null (checked
            // above) that the C side takes its own reference to; the blob is
            // passed raw, no reference to it live across the release of the
            // old context (which may run Python code).
            unsafe { Blob::set_context(c.state_ptr(), ptr.cast()) };
        }
        Ok(())
    }

    #[getter]
    fn _stack_saved(&self) -> usize {
        self.coro().saved_bytes()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let g = slf.get();
        switch::retire_orphan(g, slf.as_ptr());
        let c = g.coro();
        let tp = slf.get_type();
        let name = format!("{}.{}", tp.module()?, tp.qualname()?);
        let otid = Arc::as_ptr(&c.thread()) as usize;
        let mut flags = String::new();
        if (c.status.get() == Status::Active || c.orphaned.get()) && !c.thread_alive() {
            flags.push_str(" (thread exited) dead");
        } else {
            match c.status.get() {
                Status::Active => {
                    flags.push_str(if is_current(py, g) { " current" } else { " suspended" });
                    flags.push_str(" active started");
                    if c.is_main {
                        flags.push_str(" main");
                    }
                }
                Status::Unstarted => flags.push_str(" pending"),
                Status::Dead => flags.push_str(" dead"),
            }
        }
        Ok(format!("<{name} object at {:#x} (otid={otid:#x}){flags}>", slf.as_ptr() as usize))
    }

    fn __getstate__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(PyTypeError::new_err(format!("cannot serialize '{}' object", slf.get_type().name()?)))
    }

    /// greenlet's `__dict__`: made on first use; only ever a dict.
    #[getter(__dict__)]
    fn get_dict(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let cell = slf.get().dict.get();
        // SAFETY: GIL held; the field holds an owned reference or null, and
        // is only read and written through the raw pointer, no reference to
        // it live. Making the dict may start a collection whose finalizers
        // set `__dict__`: the field is looked at again after, and the spare
        // dict (new, empty: its release runs no code) is released.
        unsafe {
            if (*cell).is_null() {
                let d = PyDict::new(py).into_ptr();
                if (*cell).is_null() {
                    *cell = d;
                } else {
                    ffi::Py_DECREF(d);
                }
            }
            Ok(Bound::from_borrowed_ptr(py, *cell).unbind())
        }
    }

    #[setter(__dict__)]
    fn set_dict(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        let d = value.cast_into::<PyDict>().map_err(|_| PyTypeError::new_err("__dict__ must be a dictionary"))?;
        // SAFETY: GIL held; the field's old reference is ours to release.
        let old = unsafe { std::mem::replace(&mut *slf.get().dict.get(), d.into_ptr()) };
        if !old.is_null() {
            // SAFETY: as above; released after the new dict is in place.
            unsafe { ffi::Py_DECREF(old) };
        }
        Ok(())
    }

    #[deleter(__dict__)]
    fn del_dict(&self) -> PyResult<()> {
        Err(PyTypeError::new_err("__dict__ may not be deleted"))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: the collector calls tp_traverse with the GIL; the field
        // holds an owned reference or null, visited without touching refcounts.
        let dict = unsafe { *self.dict.get() };
        if !dict.is_null() {
            // SAFETY: a live object this greenlet owns (see above).
            // ManuallyDrop: the handle is never released, so the count stays.
            let obj = std::mem::ManuallyDrop::new(unsafe { Bound::<PyAny>::from_owned_ptr(Python::assume_attached(), dict) }.unbind());
            visit.call(&*obj)?;
        }
        let Some(c) = self.coro_if_any() else { return Ok(()) };
        // SAFETY: (all three `peek`s) tp_traverse runs no Python code: the
        // collector's visit callbacks only count or mark, so nothing writes
        // the slots while they are borrowed.
        if let Some(p) = unsafe { c.parent.peek() } {
            visit.call(p)?;
        }
        // SAFETY: as above.
        if let Some(r) = unsafe { c.run.peek() } {
            visit.call(r)?;
        }
        // SAFETY: as above.
        if let Some((run, args, kwargs)) = unsafe { c.call.peek() } {
            visit.call(run)?;
            visit.call(args)?;
            if let Some(k) = kwargs {
                visit.call(k)?;
            }
        }
        // SAFETY: borrowed pointers owned by the blob; ManuallyDrop keeps the
        // refcounts untouched while the collector looks at them. The blob is
        // borrowed for the two reads only, which run no code, so no other
        // reference to it is formed meanwhile (`Coro`'s rule).
        for p in unsafe { (*c.state_ptr()).refs() } {
            if !p.is_null() {
                // SAFETY: a live object the blob references (see above); the
                // collector calls tp_traverse with the GIL held.
                let obj = std::mem::ManuallyDrop::new(unsafe { Bound::<PyAny>::from_owned_ptr(Python::assume_attached(), p.cast()) }.unbind());
                visit.call(&*obj)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL; the field's reference is ours.
        let dict = unsafe { std::mem::replace(&mut *self.dict.get(), std::ptr::null_mut()) };
        if !dict.is_null() {
            // SAFETY: as above; the field no longer points at it.
            unsafe { ffi::Py_DECREF(dict) };
        }
        let Some(c) = self.coro_if_any() else { return };
        // Only greenlets that cannot run again are cleared (see typeslots::is_gc).
        // Each slot is emptied before its old value is dropped: code that
        // runs from a drop finds it empty.
        if c.status.get() != Status::Active || !c.thread_alive() {
            c.run.set(None);
            if !c.is_main {
                c.parent.set(None);
            }
        }
    }
}

impl Drop for Coro {
    fn drop(&mut self) {
        // SAFETY: dropped by `Greenlet`'s drop, which runs inside tp_dealloc
        // (typeslots.rs), or where PyO3 drops a value it never placed, with
        // the GIL either way.
        let py = unsafe { Python::assume_attached() };
        switch::forget_suspended(py, self);
        // SAFETY: `Blob::clear` needs the GIL, held in both places this drop
        // runs (above); `forget_suspended` has already detached a suspended
        // coroutine's stack, so dropping the blob's references (context,
        // handled exception) leaves nothing that points at them. The blob
        // goes raw: what the releases run cannot reach this coroutine (its
        // object is past its last reference, its weak references cleared),
        // and no reference to the blob is live across the call.
        unsafe { Blob::clear(self.state_ptr()) };
    }
}

#[pyfunction]
fn getcurrent(py: Python<'_>) -> PyResult<Py<Greenlet>> {
    getcurrent_unless_finalizing(py)
}

/// `getcurrent()` for callers from outside weft (Python and the C API).
/// Once the interpreter finalizes, thread states are being torn down: handing
/// out a greenlet then would invite switches into stacks that are going away.
/// The message is greenlet's own, which programs may look for.
pub(crate) fn getcurrent_unless_finalizing(py: Python<'_>) -> PyResult<Py<Greenlet>> {
    if weft_pystate::is_finalizing() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err("greenlet is being finalized"));
    }
    getcurrent_py(py)
}

/// Sets this thread's switch tracer; returns the previous one (or None).
#[pyfunction]
fn settrace(py: Python<'_>, callback: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let td = thread_data(py)?;
    let new = if callback.is_none() { None } else { Some(callback.unbind()) };
    // SAFETY: this thread's live data.
    let old = unsafe { std::mem::replace(&mut (*td).trace, new) };
    Ok(old.unwrap_or_else(|| py.None()))
}

#[pyfunction]
fn gettrace(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let td = thread_data(py)?;
    // SAFETY: this thread's live data.
    Ok(unsafe { (*td).trace.as_ref().map(|t| t.clone_ref(py)) }.unwrap_or_else(|| py.None()))
}

/// Number of OS threads that have a main greenlet and are still alive.
#[pyfunction]
fn _live_main_greenlets(py: Python<'_>) -> usize {
    thread::release_orphans(py);
    thread::LIVE_MAIN_GREENLETS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Pending kills queued for this thread by other threads.
#[pyfunction]
fn _pending_kills(py: Python<'_>) -> PyResult<usize> {
    let td = thread_data(py)?;
    // SAFETY: this thread's live data.
    let record = unsafe { &(*td).record };
    Ok(record.kills.len())
}

/// Size of the Python data-stack chunk a new greenlet starts with.
#[pyfunction]
fn _set_root_chunk_bytes(py: Python<'_>, n: usize) {
    weft_pystate::set_root_chunk_bytes(py, n)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    if !weft_pystate::layout_ok() {
        return Err(pyo3::exceptions::PyImportError::new_err(format!(
            "weft: pystate layout mismatch: csrc/pystate.c reserves {} bytes per coroutine state, \
             crates/weft-pystate/src/lib.rs BLOB_BYTES is {}; make WEFT_PYSTATE_BYTES and BLOB_BYTES \
             equal and rebuild (a stale build of one crate also causes this: cargo clean -p weft-pystate)",
            weft_pystate::c_blob_bytes(),
            weft_pystate::BLOB_BYTES
        )));
    }
    // SAFETY: reading the running interpreter's version constant.
    let running = unsafe { ffi::Py_Version } as u32;
    if running >> 16 != weft_pystate::built_for() >> 16 {
        let v = |x: u32| format!("{}.{}", x >> 24, (x >> 16) & 0xff);
        return Err(pyo3::exceptions::PyImportError::new_err(format!(
            "weft was built for CPython {} but runs on CPython {}: install the weft wheel for CPython {}, or rebuild weft with this interpreter (pip install .)",
            v(weft_pystate::built_for()),
            v(running),
            v(running)
        )));
    }
    // 3.14+: an interpreter built with the JIT lays its thread state out with
    // the JIT's fields; one without does not. Built for one, weft must not
    // run on the other (it would read the thread state at wrong offsets).
    if let Ok(jit) = py.import("sys").and_then(|s| s.getattr("_jit")) {
        let running_jit = jit.call_method0("is_available").and_then(|v| v.is_truthy()).unwrap_or(false);
        if running_jit != weft_pystate::built_with_jit() {
            let what = |b: bool| if b { "with" } else { "without" };
            let version = format!("{}.{}", running >> 24, (running >> 16) & 0xff);
            return Err(pyo3::exceptions::PyImportError::new_err(format!(
                "weft was built for a CPython {version} built {} the JIT, but this one is built {} it (their thread states differ): \
                 build weft from source with this interpreter (pip install .)",
                what(weft_pystate::built_with_jit()),
                what(running_jit)
            )));
        }
    }
    m.add_class::<Greenlet>()?;
    layout::install(py)?;
    typeslots::install(py)?;
    capi::register(m)?;
    m.add("GreenletExit", py.get_type::<GreenletExit>())?;
    m.add("error", py.get_type::<error>())?;
    m.add_function(wrap_pyfunction!(getcurrent, m)?)?;
    m.add_function(wrap_pyfunction!(settrace, m)?)?;
    m.add_function(wrap_pyfunction!(gettrace, m)?)?;
    m.add_function(wrap_pyfunction!(_live_main_greenlets, m)?)?;
    m.add_function(wrap_pyfunction!(_pending_kills, m)?)?;
    m.add_function(wrap_pyfunction!(_set_root_chunk_bytes, m)?)?;
    testing::register(m)?;
    Ok(())
}
