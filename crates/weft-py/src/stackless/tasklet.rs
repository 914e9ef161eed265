//! `tasklet`: a microthread run by its thread's scheduler, on a coroutine of
//! weft's engine (`greenlet::switch`), finishing through `body_done`.
use std::cell::RefCell;
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{ffi, PyTraverseError, PyVisit};

use weft_sched::chan::Dir;
use weft_sched::Key;

use crate::greenlet::{Greenlet, Passing, ThreadData};

use super::channel::Channel;
use super::sched::{self, Shared};
use super::{exits, make_exception};

/// Where a tasklet is linked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Place {
    /// Not linked: new, paused, running outside the ring, or dead.
    Nowhere,
    /// In its thread's ring of runnable tasklets.
    Run(Key),
    /// Made runnable by another thread: in its own thread's mailbox.
    Mail,
    /// Waiting on a channel (`blocked_on`) in this direction.
    Chan(Dir, Key),
    /// Waiting for an event of another kind (a gateway's item, a timeout):
    /// a wake-up carrying this token makes it runnable; stale ones are
    /// ignored.
    Parked(u64),
}

/// What a channel hands a tasklet: a value, or an exception to raise.
pub(crate) enum Temp {
    Empty,
    Value(Py<PyAny>),
    /// Boxed: a `Temp` lives in frames that stay on suspended stacks.
    Exc(Box<PyErr>),
}

impl Temp {
    /// Drops it with the attachment token in hand (see `super::release`).
    pub(crate) fn release(self, py: Python<'_>) {
        match self {
            Temp::Value(v) => super::release(py, v),
            other => drop(other),
        }
    }
}

pub(crate) struct TState {
    pub coro: Option<Py<Greenlet>>,
    pub func: Option<Py<PyAny>>,
    pub args: Option<Py<PyTuple>>,
    pub kwargs: Option<Py<PyDict>>,
    pub thread: Arc<Shared>,
    pub place: Place,
    /// The channel it waits on (borrowed: the channel's queue holds the
    /// tasklet, and a channel being dropped clears this in every waiter).
    pub blocked_on: Option<*mut ffi::PyObject>,
    pub temp: Temp,
    /// An exception thrown with `pending=True`: raised when it next runs.
    pub pending: Option<PyErr>,
    pub is_main: bool,
    pub started: bool,
    pub dead: bool,
    pub atomic: bool,
    pub ignore_nesting: bool,
    pub block_trap: bool,
    pub trace: Option<Py<PyAny>>,
    pub profile: Option<Py<PyAny>>,
    /// The contextvars.Context it runs in: its creator's, shared (as in
    /// Stackless 3.7.6+), taken when a function is bound.
    pub context: Option<Py<PyAny>>,
    /// Counts parkings: a wake-up names the parking it is for.
    pub park_token: u64,
    /// The select it waits in, while it waits in one.
    pub select: Option<std::sync::Arc<super::select::Select>>,
}

#[pyclass(
    module = "weft.stackless",
    name = "tasklet",
    subclass,
    weakref,
    dict,
    frozen
)]
pub struct Tasklet {
    st: RefCell<TState>,
}

// SAFETY: the state is only reached with the GIL held (every entry point is
// a Python call), which serialises threads; re-entry on one thread is caught
// by the RefCell (a borrow never spans a call into Python or a switch).
// weft refuses free-threaded builds, where this would not hold.
unsafe impl Sync for Tasklet {}
// SAFETY: as above; the Arc and Py handles are Send.
unsafe impl Send for Tasklet {}

fn rt(msg: &str) -> PyErr {
    PyRuntimeError::new_err(msg.to_owned())
}

impl Tasklet {
    fn blank(thread: Arc<Shared>) -> Self {
        Tasklet {
            st: RefCell::new(TState {
                coro: None,
                func: None,
                args: None,
                kwargs: None,
                thread,
                place: Place::Nowhere,
                blocked_on: None,
                temp: Temp::Empty,
                pending: None,
                is_main: false,
                started: false,
                dead: false,
                atomic: false,
                ignore_nesting: false,
                block_trap: false,
                trace: None,
                profile: None,
                context: None,
                park_token: 0,
                select: None,
            }),
        }
    }

    pub(crate) fn new_main(coro: Py<Greenlet>, thread: Arc<Shared>) -> Self {
        let t = Tasklet::blank(thread);
        {
            let mut st = t.st.borrow_mut();
            st.coro = Some(coro);
            st.is_main = true;
            st.started = true;
        }
        t
    }

    pub(crate) fn state(&self) -> std::cell::RefMut<'_, TState> {
        self.st.borrow_mut()
    }

    pub(crate) fn place(&self) -> Place {
        self.st.borrow().place
    }

    /// Moves the tasklet; its thread counts the tasklets blocked on
    /// channels (what `run(threadblock=True)` waits for).
    ///
    /// The counts change only with the GIL held (as every place does), which
    /// orders the changes of all threads: a load and a store do, without
    /// the locked read-modify-write (a hand-off moves a tasklet in and out
    /// of a channel once each).
    pub(crate) fn set_place(&self, p: Place) {
        Self::place_in(&mut self.st.borrow_mut(), p);
    }

    /// Taken off the channel it waited on (by its partner): not linked
    /// anywhere and not blocked, in one borrow.
    pub(crate) fn leave_channel(&self) {
        let mut st = self.st.borrow_mut();
        st.blocked_on = None;
        Self::place_in(&mut st, Place::Nowhere);
    }

    /// `set_place` on borrowed state.
    fn place_in(st: &mut TState, p: Place) {
        use std::sync::atomic::Ordering::Relaxed;
        let count = |pl: &Place| (matches!(pl, Place::Chan(..)), matches!(pl, Place::Parked(_)));
        let (was_c, was_p) = count(&st.place);
        let (now_c, now_p) = count(&p);
        if was_c != now_c {
            let n = st.thread.blocked.load(Relaxed);
            st.thread.blocked.store(if now_c { n + 1 } else { n - 1 }, Relaxed);
        }
        if was_p != now_p {
            let n = st.thread.parked.load(Relaxed);
            st.thread.parked.store(if now_p { n + 1 } else { n - 1 }, Relaxed);
        }
        st.place = p;
    }

    pub(crate) fn coro_ptr(&self) -> *mut ffi::PyObject {
        self.st
            .borrow()
            .coro
            .as_ref()
            .map_or(std::ptr::null_mut(), |c| c.as_ptr())
    }

    pub(crate) fn is_alive(&self) -> bool {
        let st = self.st.borrow();
        !st.dead && (st.started || st.args.is_some())
    }

    pub(crate) fn is_main(&self) -> bool {
        self.st.borrow().is_main
    }

    pub(crate) fn atomic(&self) -> bool {
        self.st.borrow().atomic
    }

    pub(crate) fn same_thread(&self, other: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.st.borrow().thread, other)
    }

    /// Its thread has not ended.
    pub(crate) fn thread_alive(&self) -> bool {
        self.st.borrow().thread.alive.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Both tasklets belong to one thread.
    pub(crate) fn same_thread_as(&self, other: &Tasklet) -> bool {
        Arc::ptr_eq(&self.st.borrow().thread, &other.st.borrow().thread)
    }

    pub(crate) fn thread(&self) -> Arc<Shared> {
        self.st.borrow().thread.clone()
    }

    pub(crate) fn take_temp(&self) -> Temp {
        std::mem::replace(&mut self.st.borrow_mut().temp, Temp::Empty)
    }

    pub(crate) fn set_temp(&self, t: Temp) -> Temp {
        std::mem::replace(&mut self.st.borrow_mut().temp, t)
    }

    /// Everything a switch to this tasklet needs: its coroutine, and for a
    /// first run the callable and the arguments (the value carried becomes
    /// the call's arguments; an exception is raised before the call).
    /// The coroutine of a started, live tasklet with nothing pending: what
    /// `prepare_to_run` returns for it when the switch carries nothing
    /// (`Passing::Empty`), found without moving a `Passing` about.
    #[inline]
    pub(crate) fn started_coro(&self) -> Option<*mut ffi::PyObject> {
        let st = self.st.borrow();
        if st.started && !st.dead && st.pending.is_none() {
            return st.coro.as_ref().map(|c| c.as_ptr());
        }
        None
    }

    pub(crate) fn prepare_to_run(
        &self,
        py: Python<'_>,
        td: *mut ThreadData,
        passing: Passing,
    ) -> PyResult<(*mut ffi::PyObject, Option<Py<PyAny>>, Passing)> {
        // The common case, in one borrow: a started, live tasklet.
        {
            let mut st = self.st.borrow_mut();
            if st.started && !st.dead {
                if let Some(c) = st.coro.as_ref().map(|c| c.as_ptr()) {
                    let passing = match st.pending.take() {
                        Some(e) => Passing::Raise(e),
                        None => passing,
                    };
                    return Ok((c, None, passing));
                }
            }
        }
        let need_coro = {
            let st = self.st.borrow();
            if st.dead {
                return Err(rt("cannot run a dead tasklet; bind it again first"));
            }
            if !st.started && st.args.is_none() {
                return Err(rt("cannot run a tasklet that has no arguments yet: call setup() or bind(func, args) first"));
            }
            st.coro.is_none()
        };
        if need_coro {
            let c = Greenlet::new_for_scheduler(py, td)?;
            let ctx = self.st.borrow().context.as_ref().map_or(std::ptr::null_mut(), |c| c.as_ptr());
            // SAFETY: GIL held; the coroutine has not started, so its blob
            // holds the context it will start with (borrowed pointer); the
            // blob goes raw, and holds no context yet, so nothing is released.
            unsafe { weft_pystate::Blob::set_context(c.get().coro().state_ptr(), ctx.cast()) };
            self.st.borrow_mut().coro = Some(c);
        }
        let mut st = self.st.borrow_mut();
        let passing = match st.pending.take() {
            Some(e) => Passing::Raise(e),
            None => passing,
        };
        let coro = st.coro.as_ref().expect("made above").as_ptr();
        if st.started {
            return Ok((coro, None, passing));
        }
        st.started = true;
        let run = st.func.as_ref().map(|f| f.clone_ref(py));
        let args = st
            .args
            .take()
            .unwrap_or_else(|| PyTuple::empty(py).unbind());
        let kwargs = st.kwargs.take();
        let passing = match passing {
            Passing::Raise(e) => Passing::Raise(e),
            _ => Passing::Args(args, kwargs),
        };
        Ok((coro, run, passing))
    }

    /// Marks a finished tasklet dead and gives back what it held.
    pub(crate) fn finish(&self) -> Released {
        let mut st = self.st.borrow_mut();
        st.dead = true;
        st.atomic = false;
        (
            st.func.take(),
            st.args.take(),
            st.kwargs.take(),
            std::mem::replace(&mut st.temp, Temp::Empty),
        )
    }

    fn check_own_thread(&self, py: Python<'_>, what: &str) -> PyResult<Arc<Shared>> {
        let here = sched::with(py, |s| s.shared.clone())?;
        if !self.same_thread(&here) {
            return Err(rt(&format!("cannot {what} a tasklet of another thread; do it from the thread that runs it (thread id {})", self.thread().thread_id)));
        }
        Ok(here)
    }
}

impl Drop for Tasklet {
    fn drop(&mut self) {
        // SAFETY: pyclass contents are dropped in tp_dealloc, with the GIL.
        let py = unsafe { Python::assume_attached() };
        let st = self.st.get_mut();
        let Some(coro) = st.coro.take() else { return };
        if st.is_main || st.dead || !st.started {
            return;
        }
        // A suspended tasklet nobody references any more is killed with
        // TaskletExit (its finally blocks run), as Stackless does. Not here:
        // a reference can go away in the middle of a switch, where a kill
        // (itself a switch) would tangle the two. Its coroutine waits in the
        // scheduler's `doomed` list, killed at the next scheduler call of
        // this thread. In another thread, greenlet's finalizer queues the
        // kill for that thread.
        let here = st.thread.alive.load(std::sync::atomic::Ordering::Acquire) && sched::doom(&st.thread, &coro);
        let _ = py;
        if !here {
            drop(coro);
        }
    }
}

/// A tasklet's pickled state: function, args, kwargs, (atomic,
/// ignore_nesting, block_trap), scheduled.
type PickledState<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, (bool, bool, bool), bool);

/// What a finished tasklet gives back: its binding and its tempval.
pub(crate) type Released = (Option<Py<PyAny>>, Option<Py<PyTuple>>, Option<Py<PyDict>>, Temp);

/// The running context, made first if the thread has none yet (so that it
/// can be shared).
pub(crate) fn current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyThreadState_Get needs an attached thread state, which the
    // GIL token `py` proves; it returns this thread's, never null then.
    let ts = unsafe { ffi::PyThreadState_Get() };
    // SAFETY: `ts` is this thread's live thread state (above); reading its
    // context slot gives a borrowed pointer or null, and nothing runs
    // between this read and the incref below that could change it.
    let cur = unsafe { weft_pystate::thread_context(ts.cast()) };
    if !cur.is_null() {
        // SAFETY: `cur` is the thread state's current context, not null
        // (checked), kept alive by the thread state until we incref it here.
        return Ok(unsafe { Bound::from_borrowed_ptr(py, cur.cast()) }.unbind());
    }
    // SAFETY: GIL held; a new reference or null with an exception set.
    let ctx = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_New()) }?;
    // SAFETY: GIL held, our own thread state; the context is borrowed.
    unsafe { weft_pystate::set_thread_context(ts.cast(), ctx.as_ptr().cast()) };
    Ok(ctx.unbind())
}

/// Makes `t` runnable from the current thread: in the ring here, or through
/// its own thread's mailbox.
pub(crate) fn make_runnable(py: Python<'_>, t: Py<Tasklet>) -> PyResult<()> {
    let theirs = t.get().thread();
    let local = sched::with(py, |s| Arc::ptr_eq(&s.shared, &theirs))?;
    if local {
        sched::with(py, |s| sched::insert_back(s, t))?;
    } else {
        t.get().set_place(Place::Mail);
        theirs.post(t);
    }
    Ok(())
}

/// Takes `t` out of the channel it waits on (a kill or throw).
pub(crate) fn unblock(py: Python<'_>, t: &Tasklet) -> Option<Py<Tasklet>> {
    let (place, chan) = {
        let mut st = t.st.borrow_mut();
        (st.place, st.blocked_on.take())
    };
    if let (Place::Chan(dir, key), Some(chan)) = (place, chan) {
        t.set_place(Place::Nowhere);
        // SAFETY: a waiter's channel is alive while the waiter is in its
        // queue (Channel's Drop clears `blocked_on` of every waiter first).
        let chan = unsafe { Bound::from_borrowed_ptr(py, chan).cast_into_unchecked::<Channel>() };
        return chan.get().cancel(dir, key);
    }
    None
}

/// The exception a `throw(exc, val, tb)` raises.
fn throw_error(
    py: Python<'_>,
    exc: Option<Bound<'_, PyAny>>,
    val: Option<Bound<'_, PyAny>>,
    tb: Option<Bound<'_, PyAny>>,
) -> PyResult<PyErr> {
    let none = py.None().into_bound(py);
    let exc = match exc {
        Some(e) if !e.is_none() => e,
        _ => exits::tasklet_exit_type(py).into_any(),
    };
    make_exception(
        py,
        &exc,
        val.as_ref().unwrap_or(&none),
        tb.as_ref().unwrap_or(&none),
    )
}

#[pymethods]
impl Tasklet {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let thread = sched::with(py, |s| s.shared.clone())?;
        Ok(Tasklet::blank(thread))
    }

    #[pyo3(signature = (func=None, args=None, kwargs=None))]
    fn __init__(
        slf: &Bound<'_, Self>,
        func: Option<Bound<'_, PyAny>>,
        args: Option<Bound<'_, PyAny>>,
        kwargs: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if func.as_ref().is_some_and(|f| !f.is_none()) || args.is_some() || kwargs.is_some() {
            Tasklet::bind(slf, func, args, kwargs)?;
        }
        Ok(())
    }

    /// Binds the callable (and, given, its arguments: the tasklet is then
    /// alive but paused). All None unbinds a tasklet that has not started.
    #[pyo3(signature = (func=None, args=None, kwargs=None))]
    fn bind<'py>(
        slf: &Bound<'py, Self>,
        func: Option<Bound<'py, PyAny>>,
        args: Option<Bound<'py, PyAny>>,
        kwargs: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        let func = func.filter(|f| !f.is_none());
        let args = args.filter(|a| !a.is_none());
        let kwargs = kwargs.filter(|k| !k.is_none());
        if let Some(f) = &func {
            if !f.is_callable() {
                return Err(PyTypeError::new_err("tasklet function must be a callable"));
            }
        }
        let args = match args {
            Some(a) => Some(
                a.cast::<PyTuple>()
                    .map(|t| t.clone().unbind())
                    .or_else(|_| {
                        a.try_iter()
                            .and_then(|it| PyTuple::new(py, it.collect::<PyResult<Vec<_>>>()?))
                            .map(|t| t.unbind())
                            .map_err(|_| {
                                PyTypeError::new_err("tasklet args must be a tuple (or a sequence)")
                            })
                    })?,
            ),
            None => None,
        };
        let kwargs = match kwargs {
            Some(k) => Some(
                k.cast::<PyDict>()
                    .map_err(|_| PyTypeError::new_err("tasklet kwargs must be a dict"))?
                    .clone()
                    .unbind(),
            ),
            None => None,
        };
        let t = slf.get();
        {
            let st = t.st.borrow();
            let current = sched::exists()
                && sched::with(py, |s| s.current.as_ptr() == slf.as_ptr()).unwrap_or(false);
            if current {
                return Err(rt("cannot bind the current tasklet"));
            }
            if st.started && !st.dead {
                return Err(rt("cannot rebind a tasklet that has started: its C stack cannot be restored; kill() it first"));
            }
            if matches!(st.place, Place::Run(_) | Place::Mail | Place::Chan(..)) {
                return Err(rt("cannot bind a scheduled tasklet; remove() it first"));
            }
        }
        let old_coro = {
            let mut st = t.st.borrow_mut();
            if func.is_none() && args.is_none() && kwargs.is_none() {
                st.func = None;
                st.args = None;
                st.kwargs = None;
                st.dead = false;
                st.started = false;
                st.coro.take()
            } else {
                if let Some(f) = func {
                    st.func = Some(f.unbind());
                    drop(st);
                    let ctx = current_context(py)?;
                    st = t.st.borrow_mut();
                    st.context = Some(ctx);
                }
                if st.func.is_none() {
                    return Err(rt(
                        "tasklet has no function bound: pass func to bind() first",
                    ));
                }
                if args.is_some() || kwargs.is_some() {
                    st.args = Some(args.unwrap_or_else(|| PyTuple::empty(py).unbind()));
                    st.kwargs = kwargs;
                }
                st.dead = false;
                st.started = false;
                st.coro.take()
            }
        };
        drop(old_coro);
        Ok(slf.clone())
    }

    /// Supplies the arguments and inserts the tasklet into the run queue.
    #[pyo3(signature = (*args, **kwargs))]
    fn setup<'py>(
        slf: &Bound<'py, Self>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let t = slf.get();
        {
            let mut st = t.st.borrow_mut();
            if !st.dead && (st.started || st.args.is_some()) {
                return Err(rt("tasklet is alive already: it cannot be set up again"));
            }
            if st.func.is_none() {
                return Err(rt(
                    "tasklet has no function bound: bind(func) before setup()",
                ));
            }
            st.args = Some(args.unbind());
            st.kwargs = kwargs.map(|k| k.unbind());
            st.dead = false;
            st.started = false;
        }
        Tasklet::insert(slf)?;
        Ok(slf.clone())
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        Tasklet::setup(slf, args, kwargs)
    }

    /// Appends the tasklet to the end of the run queue.
    fn insert(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        if !t.is_alive() {
            return Err(rt(
                "cannot insert a dead or unbound tasklet; bind and set it up first",
            ));
        }
        match t.place() {
            Place::Chan(..) => {
                return Err(rt(
                    "cannot insert a blocked tasklet: a channel operation must wake it",
                ))
            }
            Place::Parked(_) => return Err(rt("cannot insert a tasklet waiting in a gateway call: its wait makes it runnable")),
            Place::Run(_) | Place::Mail => return Ok(()),
            Place::Nowhere => {}
        }
        let current = sched::with(py, |s| s.current.as_ptr() == slf.as_ptr())?;
        if current {
            // The running tasklet outside the ring (it was switched to).
            sched::with(py, |s| sched::insert_back(s, slf.clone().unbind()))?;
            return Ok(());
        }
        make_runnable(py, slf.clone().unbind())
    }

    /// Takes the tasklet out of the run queue (it stays alive, paused).
    fn remove<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        let t = slf.get();
        match t.place() {
            Place::Chan(..) => {
                return Err(rt(
                    "cannot remove a blocked tasklet: it is not in the run queue",
                ))
            }
            Place::Mail => return Err(rt("cannot remove a tasklet another thread is waking")),
            Place::Parked(_) | Place::Nowhere => return Ok(slf.clone()),
            Place::Run(_) => {}
        }
        t.check_own_thread(py, "remove")?;
        if sched::with(py, |s| s.current.as_ptr() == slf.as_ptr())? {
            return Err(rt(
                "cannot remove the current tasklet; use stackless.schedule_remove()",
            ));
        }
        let gone = sched::with(py, |s| sched::unlink(s, t))?;
        drop(gone);
        Ok(slf.clone())
    }

    /// Runs the tasklet now; the caller stays runnable, right after it.
    fn run(slf: &Bound<'_, Self>) -> PyResult<()> {
        run_or_switch(slf, false)
    }

    /// Runs the tasklet now; the caller is paused (taken out of the queue).
    fn switch(slf: &Bound<'_, Self>) -> PyResult<()> {
        run_or_switch(slf, true)
    }

    /// Raises TaskletExit in the tasklet (unblocking it); a tasklet that has
    /// not started simply ends.
    #[pyo3(signature = (pending=false))]
    fn kill(slf: &Bound<'_, Self>, pending: bool) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        if !t.is_alive() {
            return Ok(());
        }
        let err = exits::tasklet_exit(py, ());
        throw_into(slf, err, pending)
    }

    /// Raises `exc(val)` (with traceback `tb`) in the tasklet: now, with the
    /// caller right after it in the queue, or with `pending` when it next runs.
    #[pyo3(signature = (exc=None, val=None, tb=None, pending=false))]
    fn throw(
        slf: &Bound<'_, Self>,
        exc: Option<Bound<'_, PyAny>>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
        pending: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let err = throw_error(py, exc, val, tb)?;
        throw_into(slf, err, pending)
    }

    /// Raises `exc_class(*args)` in the tasklet now.
    #[pyo3(signature = (exc_class, *args))]
    fn raise_exception(
        slf: &Bound<'_, Self>,
        exc_class: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        let none = py.None().into_bound(py);
        let err = make_exception(py, &exc_class, args.as_any(), &none)?;
        throw_into(slf, err, false)
    }

    /// Sets the atomic flag (no preemption while set); returns the old one.
    fn set_atomic(&self, flag: bool) -> bool {
        std::mem::replace(&mut self.st.borrow_mut().atomic, flag)
    }

    fn set_ignore_nesting(&self, flag: bool) -> bool {
        std::mem::replace(&mut self.st.borrow_mut().ignore_nesting, flag)
    }

    /// Binds a tasklet that has not started to this thread (or `thread_id`).
    #[pyo3(signature = (thread_id=None))]
    fn bind_thread(slf: &Bound<'_, Self>, thread_id: Option<u64>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let here = sched::with(py, |s| s.shared.clone())?;
        {
            let st = t.st.borrow();
            if st.started && !st.dead {
                return Err(rt("cannot move a started tasklet to another thread: its stack belongs to its thread"));
            }
            if st.place != Place::Nowhere {
                return Err(rt(
                    "cannot rebind the thread of a scheduled tasklet; remove() it first",
                ));
            }
        }
        let target = match thread_id {
            None => here,
            Some(id) if id == here.thread_id => here,
            Some(id) => sched::shared_of(id).ok_or_else(|| {
                PyValueError::new_err(format!("no thread with id {id} runs a tasklet scheduler"))
            })?,
        };
        let old_coro = {
            let mut st = t.st.borrow_mut();
            st.thread = target;
            st.coro.take()
        };
        drop(old_coro);
        Ok(())
    }

    /// Bytes of C stack this suspended tasklet keeps on the heap (as
    /// greenlet's `_stack_saved`): for measuring, not for programs.
    #[getter]
    fn _stack_saved(&self) -> usize {
        let st = self.st.borrow();
        st.coro.as_ref().map_or(0, |g| g.get().coro().saved_bytes())
    }

    #[getter]
    fn alive(&self) -> bool {
        self.is_alive()
    }

    #[getter]
    fn paused(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let t = slf.get();
        let current =
            sched::exists() && sched::with(slf.py(), |s| s.current.as_ptr() == slf.as_ptr())?;
        Ok(t.is_alive() && t.place() == Place::Nowhere && !current)
    }

    #[getter]
    fn blocked(&self) -> i8 {
        match self.place() {
            Place::Chan(d, _) => d.sign(),
            _ => 0,
        }
    }

    #[getter]
    fn scheduled(&self) -> bool {
        self.place() != Place::Nowhere
    }

    #[getter]
    fn restorable(&self) -> bool {
        let st = self.st.borrow();
        !st.started || st.dead
    }

    #[getter]
    fn get_atomic(&self) -> bool {
        self.atomic()
    }

    #[getter]
    fn get_ignore_nesting(&self) -> bool {
        self.st.borrow().ignore_nesting
    }

    #[getter]
    fn get_block_trap(&self) -> bool {
        self.st.borrow().block_trap
    }

    #[setter]
    fn set_block_trap(&self, v: bool) {
        self.st.borrow_mut().block_trap = v;
    }

    #[getter(is_main)]
    fn get_is_main(&self) -> bool {
        self.is_main()
    }

    #[getter]
    fn is_current(slf: &Bound<'_, Self>) -> bool {
        sched::exists()
            && sched::with(slf.py(), |s| s.current.as_ptr() == slf.as_ptr()).unwrap_or(false)
            || sched::is_current_elsewhere(slf.as_ptr(), &slf.get().thread())
    }

    #[getter]
    fn thread_id(&self) -> i64 {
        let th = self.thread();
        if th.alive.load(std::sync::atomic::Ordering::Acquire) {
            th.thread_id as i64
        } else {
            -1
        }
    }

    #[getter]
    fn next(slf: &Bound<'_, Self>) -> PyResult<Option<Py<Tasklet>>> {
        neighbour(slf, true)
    }

    #[getter]
    fn prev(slf: &Bound<'_, Self>) -> PyResult<Option<Py<Tasklet>>> {
        neighbour(slf, false)
    }

    #[getter]
    fn tempval(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.st.borrow().temp {
            Temp::Value(v) => v.clone_ref(py),
            Temp::Exc(e) => e.value(py).clone().into_any().unbind(),
            Temp::Empty => py.None(),
        }
    }

    #[setter]
    fn set_tempval(&self, v: Py<PyAny>) {
        let old = self.set_temp(Temp::Value(v));
        drop(old);
    }

    #[getter]
    fn frame(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let is_current =
            sched::exists() && sched::with(py, |s| s.current.as_ptr() == slf.as_ptr())?;
        if is_current {
            // SAFETY: GIL held; a borrowed reference to the running frame.
            let f = unsafe { ffi::PyEval_GetFrame() };
            // SAFETY: borrowed (or null) frame object of this thread.
            return Ok(unsafe { Bound::from_borrowed_ptr_or_opt(py, f.cast()) }
                .map(|b| b.unbind())
                .unwrap_or_else(|| py.None()));
        }
        let coro = slf.get().st.borrow().coro.as_ref().map(|c| c.clone_ref(py));
        match coro {
            Some(c) if slf.get().st.borrow().started => {
                Ok(c.bind(py).getattr("gr_frame")?.unbind())
            }
            _ => Ok(py.None()),
        }
    }

    /// C-level nesting: weft switches whole C stacks, so a tasklet never has
    /// to unwind C frames to switch: always 0.
    #[getter]
    fn nesting_level(&self) -> i32 {
        0
    }

    #[getter]
    fn trace_function(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .borrow()
            .trace
            .as_ref()
            .map_or_else(|| py.None(), |t| t.clone_ref(py))
    }

    #[setter(trace_function)]
    fn set_trace_function(slf: &Bound<'_, Self>, f: Py<PyAny>) -> PyResult<()> {
        super::tracing::set_function(slf, f, false)
    }

    #[getter]
    fn profile_function(&self, py: Python<'_>) -> Py<PyAny> {
        self.st
            .borrow()
            .profile
            .as_ref()
            .map_or_else(|| py.None(), |t| t.clone_ref(py))
    }

    #[setter(profile_function)]
    fn set_profile_function(slf: &Bound<'_, Self>, f: Py<PyAny>) -> PyResult<()> {
        super::tracing::set_function(slf, f, true)
    }

    /// Sets the contextvars.Context the tasklet runs in.
    fn set_context<'py>(slf: &Bound<'py, Self>, context: Bound<'py, PyAny>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        // SAFETY: `context` is a live object we hold a reference to; the
        // check only reads its type pointer.
        if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
            return Err(PyTypeError::new_err("set_context() needs a contextvars.Context"));
        }
        let t = slf.get();
        let is_current = sched::with(py, |s| s.current.as_ptr() == slf.as_ptr())?;
        if is_current {
            // SAFETY: GIL held, our own thread state; borrowed context.
            unsafe { weft_pystate::set_thread_context(ffi::PyThreadState_Get().cast(), context.as_ptr().cast()) };
        } else if let Some(c) = t.st.borrow().coro.as_ref().map(|c| c.clone_ref(py)) {
            // (A reference of its own: the tasklet's state is not borrowed
            // while the old context is released, which may run Python code.)
            if !t.same_thread(&sched::with(py, |s| s.shared.clone())?) && t.st.borrow().place != Place::Nowhere {
                return Err(rt("cannot set the context of a scheduled tasklet of another thread"));
            }
            // SAFETY: GIL held; the coroutine is not running (not current
            // here, and not running elsewhere: checked above); its blob goes
            // raw, no reference to it live across the release of the old
            // context (which may run Python code).
            unsafe { weft_pystate::Blob::set_context(c.get().coro().state_ptr(), context.as_ptr().cast()) };
        }
        let old = t.st.borrow_mut().context.replace(context.unbind());
        drop(old);
        Ok(slf.clone())
    }

    /// Runs `callable(*args, **kwargs)` in the tasklet's context.
    #[pyo3(signature = (callable, *args, **kwargs))]
    fn context_run(slf: &Bound<'_, Self>, callable: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, kwargs: Option<Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let ctx = tasklet_context(slf)?;
        // SAFETY: as in `current_context`: the GIL token proves an attached
        // thread state, which PyThreadState_Get returns.
        let ts = unsafe { ffi::PyThreadState_Get() };
        let saved = current_context(py)?;
        // SAFETY: as above; borrowed contexts kept alive by `ctx`/`saved`.
        unsafe { weft_pystate::set_thread_context(ts.cast(), ctx.as_ptr().cast()) };
        let r = callable.call(args, kwargs.as_ref());
        // SAFETY: `ts` is still this thread's state (the call ran in this
        // thread and returned to it); `saved` is a live context we hold,
        // and set_thread_context takes its own reference.
        unsafe { weft_pystate::set_thread_context(ts.cast(), saved.as_ptr().cast()) };
        r.map(|v| v.unbind())
    }

    /// `id()` of the context the tasklet runs in.
    #[getter]
    fn context_id(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Ok(tasklet_context(slf)?.as_ptr() as usize)
    }

    /// Pickling, as Stackless defines it for a tasklet that has not started
    /// (or has ended): its class, and as state its function, arguments and
    /// flags. A tasklet suspended inside Python code cannot be pickled: its
    /// C stack cannot be saved.
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let t = slf.get();
        let st = t.st.borrow();
        if st.is_main {
            return Err(PyTypeError::new_err("cannot pickle a main tasklet: it is its thread's own execution"));
        }
        if st.started && !st.dead {
            return Err(PyTypeError::new_err(
                "cannot pickle a tasklet that has started and not ended: weft runs tasklets on real C stacks, \
                 which cannot be saved (restoring running tasklets is not supported yet); pickle it before it runs",
            ));
        }
        let opt = |o: Option<Py<PyAny>>| o.unwrap_or_else(|| py.None());
        let state = (
            opt(st.func.as_ref().map(|f| f.clone_ref(py))),
            opt(st.args.as_ref().map(|a| a.clone_ref(py).into_any())),
            opt(st.kwargs.as_ref().map(|k| k.clone_ref(py).into_any())),
            (st.atomic, st.ignore_nesting, st.block_trap),
            matches!(st.place, Place::Run(_) | Place::Mail),
        );
        drop(st);
        let cls = slf.get_type();
        Ok((cls, PyTuple::empty(py), state).into_pyobject(py)?.into_any().unbind())
    }

    /// Restores the state `__reduce__` made; a tasklet that was scheduled
    /// when pickled is inserted again.
    fn __setstate__(slf: &Bound<'_, Self>, state: Bound<'_, PyTuple>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().is_alive() {
            return Err(rt("cannot restore the state of a tasklet that is alive"));
        }
        let (func, args, kwargs, flags, scheduled): PickledState<'_> = state.extract()?;
        let has_args = !args.is_none() || !kwargs.is_none();
        if !func.is_none() {
            Tasklet::bind(slf, Some(func), has_args.then_some(args), if kwargs.is_none() { None } else { Some(kwargs) })?;
        }
        {
            let mut st = slf.get().st.borrow_mut();
            (st.atomic, st.ignore_nesting, st.block_trap) = flags;
        }
        if scheduled && slf.get().is_alive() {
            Tasklet::insert(slf)?;
        }
        let _ = py;
        Ok(())
    }

    /// The coroutine the tasklet runs on (a weft.greenlet.greenlet), or None.
    #[getter]
    fn _greenlet(&self, py: Python<'_>) -> Option<Py<Greenlet>> {
        self.st.borrow().coro.as_ref().map(|c| c.clone_ref(py))
    }

    /// The function bound, the arguments and kwargs (None once started).
    #[getter]
    fn _binding(&self, py: Python<'_>) -> (Py<PyAny>, Py<PyAny>, Py<PyAny>) {
        let st = self.st.borrow();
        let opt = |o: Option<Py<PyAny>>| o.unwrap_or_else(|| py.None());
        (
            opt(st.func.as_ref().map(|f| f.clone_ref(py))),
            opt(st.args.as_ref().map(|a| a.clone_ref(py).into_any())),
            opt(st.kwargs.as_ref().map(|k| k.clone_ref(py).into_any())),
        )
    }

    /// True once the tasklet has begun running its function.
    #[getter]
    fn _started(&self) -> bool {
        self.st.borrow().started
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(st) = self.st.try_borrow() else {
            return Ok(());
        };
        if let Some(f) = &st.func {
            visit.call(f)?;
        }
        if let Some(a) = &st.args {
            visit.call(a)?;
        }
        if let Some(k) = &st.kwargs {
            visit.call(k)?;
        }
        if let Temp::Value(v) = &st.temp {
            visit.call(v)?;
        }
        if let Some(c) = &st.coro {
            visit.call(c)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let Ok(mut st) = self.st.try_borrow_mut() else {
            return;
        };
        if st.started && !st.dead {
            return;
        }
        let taken = (
            st.func.take(),
            st.args.take(),
            st.kwargs.take(),
            std::mem::replace(&mut st.temp, Temp::Empty),
        );
        drop(st);
        drop(taken);
    }
}

/// The context a tasklet runs in (made and shared on first use).
fn tasklet_context(slf: &Bound<'_, Tasklet>) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let is_current = sched::with(py, |s| s.current.as_ptr() == slf.as_ptr())?;
    if is_current {
        return current_context(py);
    }
    let t = slf.get();
    if let Some(c) = t.st.borrow().context.as_ref() {
        return Ok(c.clone_ref(py));
    }
    // SAFETY: GIL held; a new reference or null with an exception set.
    let ctx = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_New()) }?.unbind();
    t.st.borrow_mut().context = Some(ctx.clone_ref(py));
    Ok(ctx)
}

fn neighbour(slf: &Bound<'_, Tasklet>, forward: bool) -> PyResult<Option<Py<Tasklet>>> {
    let py = slf.py();
    let t = slf.get();
    match t.place() {
        Place::Run(k) => {
            if !t.same_thread(&sched::with(py, |s| s.shared.clone())?) {
                return Ok(None);
            }
            sched::with(py, |s| {
                let n = if forward {
                    s.ring.next(k)
                } else {
                    s.ring.prev(k)
                };
                n.and_then(|n| s.ring.get(n)).map(|x| x.clone_ref(py))
            })
        }
        Place::Chan(d, k) => {
            let chan = t.st.borrow().blocked_on;
            // SAFETY: as in `unblock`.
            let chan = chan.map(|c| unsafe {
                Bound::from_borrowed_ptr(py, c).cast_into_unchecked::<Channel>()
            });
            Ok(chan.and_then(|c| c.get().neighbour(py, d, k, forward)))
        }
        _ => Ok(None),
    }
}

fn run_or_switch(slf: &Bound<'_, Tasklet>, pause_me: bool) -> PyResult<()> {
    let py = slf.py();
    let t = slf.get();
    let (td, me) = sched::current_checked(py)?;
    if me.as_ptr() == slf.as_ptr() {
        return Ok(());
    }
    if !t.is_alive() {
        return Err(rt("cannot run a dead or unbound tasklet"));
    }
    match t.place() {
        Place::Chan(..) => {
            return Err(rt(
                "cannot run a blocked tasklet: a channel operation must wake it",
            ))
        }
        Place::Mail => return Err(rt("cannot run a tasklet that another thread is waking")),
        _ => {}
    }
    t.check_own_thread(py, if pause_me { "switch to" } else { "run" })?;
    let target = slf.clone().unbind();
    let gone = sched::with(py, |s| {
        sched::make_head(s, &target, me.get(), false);
        if pause_me {
            sched::unlink(s, me.get())
        } else {
            None
        }
    })?;
    drop((gone, me));
    sched::switch_to(py, td, target, None).map(|_| ()).map_err(|e| *e)
}

/// `throw`/`kill`: raise `err` in `slf`.
fn throw_into(slf: &Bound<'_, Tasklet>, err: PyErr, pending: bool) -> PyResult<()> {
    let py = slf.py();
    let t = slf.get();
    let quiet = err.is_instance(py, &exits::tasklet_exit_type(py));
    if !t.is_alive() {
        if quiet {
            return Ok(());
        }
        return Err(rt("cannot throw into a dead or unbound tasklet"));
    }
    let (td, me) = sched::current_checked(py)?;
    if me.as_ptr() == slf.as_ptr() {
        return Err(err);
    }
    t.check_own_thread(py, "throw into")?;
    let started = t.st.borrow().started;
    if !started {
        // It has no frame yet to raise in: TaskletExit just ends it.
        if !quiet {
            return Err(rt("cannot throw into a tasklet that has not started yet (it has no frame to raise in); kill() it instead"));
        }
        let gone = sched::with(py, |s| sched::unlink(s, t))?;
        let held = t.finish();
        drop((gone, held));
        return Ok(());
    }
    let from_chan = unblock(py, t);
    drop(from_chan);
    let target = slf.clone().unbind();
    if pending {
        t.st.borrow_mut().pending = Some(err);
        if t.place() == Place::Nowhere {
            sched::with(py, |s| sched::insert_back(s, target))?;
        }
        return Ok(());
    }
    sched::with(py, |s| sched::make_head(s, &target, me.get(), false))?;
    drop(me);
    sched::switch_to(py, td, target, Some(Box::new(err))).map(|_| ()).map_err(|e| *e)
}
