//! `channel`: Stackless's unbuffered rendezvous between tasklets, of one
//! thread or of several. The pairing rules are `weft_sched::chan`'s; this
//! file moves the values and does the switching.
use std::cell::RefCell;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use weft_sched::chan::{after_pairing, Dir, Next, Waiters};
use weft_sched::Key;


use super::sched::{self, Here};
use super::tasklet::{make_runnable, Place, Tasklet, Temp};
use super::{callbacks, exits, make_exception, release, Light};

pub(crate) struct CState {
    waiters: Waiters<Py<Tasklet>>,
    preference: i8,
    schedule_all: bool,
    closing: bool,
}

#[pyclass(
    module = "weft.stackless",
    name = "channel",
    subclass,
    weakref,
    dict,
    frozen
)]
pub struct Channel {
    st: RefCell<CState>,
}

// SAFETY: as for Tasklet: GIL-serialised, re-entry caught by the RefCell.
unsafe impl Sync for Channel {}
// SAFETY: as above.
unsafe impl Send for Channel {}

impl Channel {
    /// Queues a select case's waiter (no checks: `select` made them).
    pub(crate) fn wait_for_select(&self, dir: Dir, t: Py<Tasklet>) -> Key {
        self.st.borrow_mut().waiters.wait(dir, t)
    }

    /// True if an operation in direction `dir` pairs now (a live partner
    /// that is not a select already fired), dropping stale entries.
    pub(crate) fn ready_for(&self, dir: Dir) -> bool {
        let st = self.st.borrow();
        st.waiters.peek_partner(dir).is_some()
    }

    /// True if the channel is closing and nobody waits in direction `dir`'s
    /// partner queue: an operation would fail.
    pub(crate) fn closed_for(&self, dir: Dir) -> bool {
        let st = self.st.borrow();
        st.closing && !st.waiters.can_pair(dir)
    }

    /// Takes a waiter out again (kill, throw, deadlock, interrupt).
    pub(crate) fn cancel(&self, d: Dir, k: Key) -> Option<Py<Tasklet>> {
        self.st.borrow_mut().waiters.cancel(d, k)
    }

    pub(crate) fn neighbour(
        &self,
        py: Python<'_>,
        d: Dir,
        k: Key,
        forward: bool,
    ) -> Option<Py<Tasklet>> {
        let st = self.st.borrow();
        let (n, p) = st.waiters.neighbours(d, k)?;
        st.waiters
            .get(d, if forward { n } else { p })
            .map(|t| t.clone_ref(py))
    }
}

/// What a receive hands back: the value, or the exception sent.
fn deliver(py: Python<'_>, t: Temp) -> Light<Py<PyAny>> {
    match t {
        Temp::Value(v) => {
            if exits::is_bomb(py, v.bind(py)) {
                return Err(Box::new(exits::bomb_error(py, v.bind(py))));
            }
            Ok(v)
        }
        Temp::Exc(e) => Err(e),
        Temp::Empty => Ok(py.None()),
    }
}

/// One channel operation by the running tasklet: `send` with `out` the value
/// or exception to hand over, or `receive` (`out` Empty).
///
/// The frames of this function and of `block` stay on a suspended tasklet's
/// C stack, which every switch copies: they keep only what must survive the
/// switch, and the work before and after it is done in out-of-line helpers
/// whose frames are gone by then.
pub(crate) fn action(slf: &Bound<'_, Channel>, dir: Dir, out: Temp) -> Light<Py<PyAny>> {
    let py = slf.py();
    // One look-up of the scheduler's thread-local for the whole operation.
    let here = Here::get();
    match pair(slf, here, dir, out)? {
        Step::Done(got) => deliver(py, got),
        Step::Block(td, me, out) => block(slf, here, td, me, dir, out),
        Step::SwitchTo(td, partner, got) => {
            release(py, sched::switch_here(py, here, td, partner, None)?);
            deliver(py, got)
        }
        Step::Away(td, me, got) => {
            super::schedule_current(py, td, me, false)?;
            deliver(py, got)
        }
    }
}

/// What a channel operation does after looking for a partner.
enum Step {
    /// Finished without a switch: hand back this.
    Done(Temp),
    /// No partner: the running tasklet waits with its value.
    Block(*mut crate::greenlet::ThreadData, Py<Tasklet>, Temp),
    /// Paired; the partner runs now, then this is handed back.
    SwitchTo(*mut crate::greenlet::ThreadData, Py<Tasklet>, Temp),
    /// Paired; the running tasklet goes to the back of the ring.
    Away(*mut crate::greenlet::ThreadData, Py<Tasklet>, Temp),
}

/// Finds the partner of an operation in direction `dir` and hands the value
/// over; says what happens next.
#[inline(never)]
fn pair(slf: &Bound<'_, Channel>, here: Here, dir: Dir, mut out: Temp) -> Light<Step> {
    let py = slf.py();
    let (td, me) = sched::current_here(py, here)?;
    let ch = slf.get();
    if callbacks::channel_hook_set() {
        let will_block = !ch.st.borrow().waiters.can_pair(dir);
        callbacks::call_channel_hook(
            py,
            slf.as_any(),
            me.bind(py).as_any(),
            dir == Dir::Send,
            will_block,
        )?;
    }
    let paired = loop {
        let next = {
            let mut st = ch.st.borrow_mut();
            st.waiters.take_partner(dir).map(|p| (p, st.preference, st.schedule_all))
        };
        match next {
            // A waiter whose thread has ended can never run: it is dropped
            // from the queue, and the value goes to the next one.
            Some((p, ..)) if !p.get().thread_alive() => {
                p.get().set_place(Place::Nowhere);
                p.get().state().blocked_on = None;
                release(py, p);
            }
            // A tasklet waiting in a select: it takes this hand-off if none
            // of its cases has fired yet (else its entry is stale: skipped).
            Some((p, ..)) if p.get().state().select.is_some() => {
                let offered = super::select::offer(py, &p, slf.as_ptr(), dir, &mut out);
                release(py, p);
                if let Some(got) = offered {
                    return Ok(Step::Done(got));
                }
            }
            other => break other,
        }
    };
    let Some((partner, preference, schedule_all)) = paired else {
        return Ok(Step::Block(td, me, out));
    };
    // The hand-over: a sender's value to the receiver.
    let pt = partner.get();
    pt.leave_channel();
    let got = match dir {
        Dir::Send => {
            pt.set_temp(out).release(py);
            Temp::Empty
        }
        Dir::Recv => pt.take_temp(),
    };
    let elsewhere = !pt.same_thread_as(me.get());
    Ok(match after_pairing(dir, preference, schedule_all, elsewhere) {
        Next::Caller if !elsewhere => {
            release(py, me);
            here.with(py, |s| sched::insert_back(s, partner))?;
            Step::Done(got)
        }
        Next::Caller => {
            release(py, me);
            make_runnable(py, partner)?;
            Step::Done(got)
        }
        Next::Partner => {
            here.with(py, |s| sched::make_head(s, &partner, me.get(), true))?;
            release(py, me);
            Step::SwitchTo(td, partner, got)
        }
        Next::Away => {
            make_runnable(py, partner)?;
            Step::Away(td, me, got)
        }
    })
}

/// The running tasklet waits on the channel until a partner comes.
fn block(
    slf: &Bound<'_, Channel>,
    here: Here,
    td: *mut crate::greenlet::ThreadData,
    me: Py<Tasklet>,
    dir: Dir,
    out: Temp,
) -> Light<Py<PyAny>> {
    let py = slf.py();
    enqueue(slf, here, &me, dir, out)?;
    let mt = me.get();
    loop {
        let r = match next_or_idle(py, here, &me) {
            Ok(Some(next)) => sched::switch_here(py, here, td, next, None).map(|v| release(py, v)),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let still_blocked = matches!(mt.place(), Place::Chan(..));
        match r {
            Err(e) => {
                if still_blocked {
                    leave_interrupted(py, &me)?;
                }
                return Err(e);
            }
            Ok(()) if still_blocked => continue,
            Ok(()) => break,
        }
    }
    // Woken: the run queue holds us again (we are running).
    let got = woken(py, mt, dir);
    release(py, me);
    got
}

/// Queues the running tasklet `me` on the channel with its value `out`, and
/// takes it out of the ring; fails if the channel is closing or `me` may
/// not block.
#[inline(never)]
fn enqueue(slf: &Bound<'_, Channel>, here: Here, me: &Py<Tasklet>, dir: Dir, out: Temp) -> Light<()> {
    let py = slf.py();
    let ch = slf.get();
    let mt = me.get();
    if ch.st.borrow().closing {
        return Err(Box::new(PyValueError::new_err(
            "Send/receive operation on a closed channel",
        )));
    }
    if mt.state().block_trap {
        return Err(Box::new(PyRuntimeError::new_err(
            "this tasklet does not like to be blocked (its block_trap is set)",
        )));
    }
    let key = ch.st.borrow_mut().waiters.wait(dir, me.clone_ref(py));
    {
        let mut st = mt.state();
        st.blocked_on = Some(slf.as_ptr());
        let stale = std::mem::replace(&mut st.temp, out);
        drop(st);
        stale.release(py);
    }
    // Out of the ring and into the channel's place in one move.
    let left_ring = here.with(py, |s| {
        let gone = match mt.place() {
            Place::Run(k) => s.ring.remove(k),
            _ => None,
        };
        mt.set_place(Place::Chan(dir, key));
        gone
    })?;
    if let Some(t) = left_ring {
        release(py, t);
    }
    Ok(())
}

/// The tasklet to switch to while `me` waits, or `None` once another thread
/// handed something over while this one idled (nothing else could run).
/// Fails instead of hanging when nothing could ever wake `me`.
#[inline(never)]
fn next_or_idle(py: Python<'_>, here: Here, me: &Py<Tasklet>) -> Light<Option<Py<Tasklet>>> {
    let next = here.with(py, |s| sched::pick_next(s, py))?;
    if next.as_ptr() != me.as_ptr() {
        return Ok(Some(next));
    }
    release(py, next);
    match sched::idle_wait(py)? {
        true => Ok(None),
        false => Err(Box::new(PyRuntimeError::new_err(
            "Deadlock: the last runnable tasklet cannot be blocked (nothing else in this thread can run, and no other thread could wake it)",
        ))),
    }
}

/// Interrupted (Ctrl-C, deadlock) while waiting: `me` leaves the channel and
/// becomes the running tasklet again.
#[inline(never)]
fn leave_interrupted(py: Python<'_>, me: &Py<Tasklet>) -> Light<()> {
    let mt = me.get();
    let (gone, stale) = {
        let gone = super::tasklet::unblock(py, mt);
        (gone, mt.take_temp())
    };
    drop((gone, stale));
    Ok(sched::with(py, |s| sched::make_head(s, me, mt, false))?)
}

/// What a woken waiter hands back: a receiver its value, a sender `None`
/// (or the exception thrown into it).
#[inline(never)]
fn woken(py: Python<'_>, mt: &Tasklet, dir: Dir) -> Light<Py<PyAny>> {
    let got = mt.take_temp();
    match dir {
        Dir::Send => match got {
            Temp::Exc(e) => Err(e),
            _ => Ok(py.None()),
        },
        Dir::Recv => deliver(py, got),
    }
}

/// `channel.send` as CPython calls it (METH_FASTCALL | METH_KEYWORDS): one
/// positional argument goes straight to `action`; any other call goes to
/// the method PyO3 made (`send` below), which parses it and reports errors
/// as before. PyO3's own entry parses every call through its general
/// argument extraction, which costs as much as a quarter of the hand-off.
///
/// # Safety
/// Called by CPython through the trampoline: `slf` and the `nargs`
/// arguments at `args` are live borrowed references, `kwnames` a tuple or
/// NULL.
unsafe fn send_fast(
    py: Python<'_>,
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> PyResult<*mut pyo3::ffi::PyObject> {
    if nargs != 1 || !kwnames.is_null() {
        // SAFETY: our own contract, passed on.
        return unsafe { send_slow(py, slf, args, nargs, kwnames) };
    }
    // SAFETY: live borrowed references (our contract); each Bound takes a
    // reference of its own.
    let (slf, value) = unsafe { (Bound::from_borrowed_ptr(py, slf), Bound::from_borrowed_ptr(py, *args)) };
    let slf = slf.cast_into::<Channel>()?;
    action(&slf, Dir::Send, Temp::Value(value.unbind())).map(|v| v.into_ptr()).map_err(|e| *e)
}

/// PyO3's `send` method, called as `send(slf, *args, **kw)` would be.
///
/// # Safety
/// As for `send_fast`.
#[inline(never)]
unsafe fn send_slow(
    py: Python<'_>,
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> PyResult<*mut pyo3::ffi::PyObject> {
    let method = SLOW_SEND.get(py).ok_or_else(|| PyRuntimeError::new_err("channel.send is not set up"))?;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: `kwnames` is a live tuple (our contract).
        unsafe { pyo3::ffi::PyTuple_GET_SIZE(kwnames) }
    };
    let mut all = Vec::with_capacity(1 + (nargs + nkw) as usize);
    all.push(slf);
    for i in 0..(nargs + nkw) {
        // SAFETY: CPython passes `nargs` positional arguments followed by
        // one value per keyword name.
        all.push(unsafe { *args.offset(i) });
    }
    // SAFETY: `method` is a live method descriptor; `all` holds 1 + nargs
    // + nkw borrowed references, alive for the call; `kwnames` as given.
    let r = unsafe { pyo3::ffi::PyObject_Vectorcall(method.as_ptr(), all.as_ptr(), (nargs + 1) as usize, kwnames) };
    if r.is_null() {
        Err(PyErr::fetch(py))
    } else {
        Ok(r)
    }
}

/// The method PyO3 made for `send` (see `send_fast`).
static SLOW_SEND: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// Puts `send_fast` in the channel type as its `send`, keeping PyO3's
/// method for the calls it does not take.
pub(crate) fn install_fast_send(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<Channel>();
    let slow = ty.getattr("send")?;
    let _ = SLOW_SEND.set(py, slow.unbind());
    let def = Box::leak(Box::new(pyo3::ffi::PyMethodDef {
        ml_name: c"send".as_ptr(),
        ml_meth: pyo3::ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(fastcall_cfunction_with_keywords, send_fast),
        },
        ml_flags: pyo3::ffi::METH_FASTCALL | pyo3::ffi::METH_KEYWORDS,
        ml_doc: c"send($self, value)\n--\n\nSends `value` to a receiver, blocking until one takes it.".as_ptr(),
    }));
    // SAFETY: `ty` is the live channel type; `def` is leaked, so it
    // outlives the descriptor, as CPython requires.
    let descr = unsafe { pyo3::ffi::PyDescr_NewMethod(ty.as_type_ptr(), def) };
    // SAFETY: a new reference or NULL with an exception set.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, descr) }?;
    ty.setattr("send", descr)
}

#[pymethods]
impl Channel {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> Self {
        Channel {
            st: RefCell::new(CState {
                waiters: Waiters::new(),
                preference: -1,
                schedule_all: false,
                closing: false,
            }),
        }
    }

    /// Sends `value` to a receiver, blocking until one takes it.
    fn send(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        action(slf, Dir::Send, Temp::Value(value)).map_err(|e| *e)
    }

    /// Receives a value, blocking until a sender comes.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        action(slf, Dir::Recv, Temp::Empty).map_err(|e| *e)
    }

    /// Sends an exception `exc(*args)`: the receiver raises it.
    #[pyo3(signature = (exc, *args))]
    fn send_exception(
        slf: &Bound<'_, Self>,
        exc: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let none = py.None().into_bound(py);
        let err = make_exception(py, &exc, args.as_any(), &none)?;
        action(slf, Dir::Send, Temp::Exc(Box::new(err))).map_err(|e| *e)
    }

    /// Sends an exception as `raise exc(val)` with traceback `tb` would.
    #[pyo3(signature = (exc, val=None, tb=None))]
    fn send_throw(
        slf: &Bound<'_, Self>,
        exc: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let none = py.None().into_bound(py);
        let err = make_exception(
            py,
            &exc,
            val.as_ref().unwrap_or(&none),
            tb.as_ref().unwrap_or(&none),
        )?;
        action(slf, Dir::Send, Temp::Exc(Box::new(err))).map_err(|e| *e)
    }

    /// Sends every item of `seq`; returns how many were sent.
    fn send_sequence(slf: &Bound<'_, Self>, seq: Bound<'_, PyAny>) -> PyResult<usize> {
        let mut n = 0;
        for item in seq.try_iter()? {
            action(slf, Dir::Send, Temp::Value(item?.unbind())).map_err(|e| *e)?;
            n += 1;
        }
        Ok(n)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let closed = {
            let st = slf.get().st.borrow();
            st.closing && st.waiters.balance() == 0
        };
        if closed {
            return Err(PyStopIteration::new_err(()));
        }
        action(slf, Dir::Recv, Temp::Empty).map_err(|e| *e)
    }

    /// No new waiters from now on; `closed` once the queue is empty. A
    /// select waiting on this channel looks at its cases again: its case
    /// here now fires with CLOSED (its own entry does not keep it open).
    fn close(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let selects: Vec<Py<Tasklet>> = {
            let mut st = slf.get().st.borrow_mut();
            st.closing = true;
            st.waiters.iter().filter(|(_, t)| t.get().state().select.is_some()).map(|(_, t)| t.clone_ref(py)).collect()
        };
        for t in selects {
            if let Place::Parked(token) = t.get().place() {
                (sched::waker(py, &t, token))();
            }
        }
    }

    /// Reopens a closing or closed channel.
    fn open(&self) {
        self.st.borrow_mut().closing = false;
    }

    #[getter]
    fn balance(&self) -> isize {
        self.st.borrow().waiters.balance()
    }

    /// The first waiting tasklet, or None.
    #[getter]
    fn queue(&self, py: Python<'_>) -> Option<Py<Tasklet>> {
        self.st
            .borrow()
            .waiters
            .first()
            .map(|(_, t)| t.clone_ref(py))
    }

    #[getter]
    fn closing(&self) -> bool {
        self.st.borrow().closing
    }

    #[getter]
    fn closed(&self) -> bool {
        let st = self.st.borrow();
        st.closing && st.waiters.balance() == 0
    }

    #[getter]
    fn get_preference(&self) -> i8 {
        self.st.borrow().preference
    }

    #[setter]
    fn set_preference(&self, v: i64) {
        self.st.borrow_mut().preference = v.clamp(-1, 1) as i8;
    }

    #[getter]
    fn get_schedule_all(&self) -> bool {
        self.st.borrow().schedule_all
    }

    #[setter]
    fn set_schedule_all(&self, v: bool) {
        self.st.borrow_mut().schedule_all = v;
    }

    /// Pickling: an idle channel pickles its preference, schedule_all and
    /// closing flags. Waiting tasklets are suspended inside Python code,
    /// which cannot be pickled (see tasklet.__reduce__).
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let st = slf.get().st.borrow();
        if st.waiters.balance() != 0 || st.waiters.first().is_some() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "cannot pickle a channel with tasklets waiting on it: they are suspended on C stacks, which cannot be saved",
            ));
        }
        let state = (st.preference, st.schedule_all, st.closing);
        drop(st);
        Ok((slf.get_type(), PyTuple::empty(py), state).into_pyobject(py)?.into_any().unbind())
    }

    fn __setstate__(&self, state: (i8, bool, bool)) {
        let mut st = self.st.borrow_mut();
        st.preference = state.0.clamp(-1, 1);
        st.schedule_all = state.1;
        st.closing = state.2;
    }

    /// The waiting tasklets in order (senders, then receivers).
    fn _waiters(&self, py: Python<'_>) -> Vec<(i8, Py<Tasklet>)> {
        self.st
            .borrow()
            .waiters
            .iter()
            .map(|(d, t)| (d.sign(), t.clone_ref(py)))
            .collect()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(st) = self.st.try_borrow() else {
            return Ok(());
        };
        for (_, t) in st.waiters.iter() {
            visit.call(t)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = match self.st.try_borrow_mut() {
            Ok(mut st) => st.waiters.drain(),
            Err(_) => return,
        };
        for (_, t) in &taken {
            t.get().set_place(Place::Nowhere);
            t.get().state().blocked_on = None;
        }
        drop(taken);
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // Waiters left behind become paused tasklets; unreferenced ones are
        // collected (and killed) as they are dropped here.
        let taken = self.st.get_mut().waiters.drain();
        for (_, t) in &taken {
            t.get().set_place(Place::Nowhere);
            t.get().state().blocked_on = None;
        }
        drop(taken);
    }
}
