//! The switch: find the greenlet that should run, move the stack and the
//! interpreter state, and hand over what the switch carries.
//!
//! Nothing that must survive a switch lives in a Rust local of the switching
//! frames: in-flight values go through the thread's `ThreadData`.
use std::ffi::c_void;

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::ffi;

use weft_stack::{Arrival, Slice};

use super::thread::{thread_data, thread_data_if_any, Passing, ThreadData, ThreadRecord};
use super::testing::Fault;
use super::{error_new, Coro, Finish, Greenlet, GreenletExit, Status};

fn ts() -> *mut weft_pystate::ThreadState {
    // SAFETY: callers hold the GIL.
    unsafe { ffi::PyThreadState_Get().cast() }
}

/// Switches to `target` (or, if it is dead, its nearest live ancestor),
/// carrying `passing`; returns what is carried back to us.
///
/// This frame stays on a suspended greenlet's stack slice, so everything that
/// needs room (errors, the parent walk, starting) happens in helpers that have
/// returned before the switch: fewer bytes to copy per switch and per
/// suspended greenlet.
pub(crate) fn switch_to(py: Python<'_>, target: &Bound<'_, Greenlet>, passing: Passing) -> PyResult<Py<PyAny>> {
    // SAFETY: `prepare_switch` returns a live target of this thread; it is kept
    // alive by `target`'s parent chain or by `target` itself.
    unsafe {
        let (td, t) = match prepare_switch(py, target, passing)? {
            Prepared::Deliver(r) => return r,
            Prepared::Go(td, t) => (td, t),
        };
        if payload(t).coro().status.get() == Status::Unstarted {
            start(td, t);
        } else {
            switch_stack(td, t);
        }
        arrived(py, td)
    }
}

enum Prepared {
    /// No switch needed (the target is the running greenlet): the result.
    Deliver(PyResult<Py<PyAny>>),
    /// Switch to this greenlet object; `passing` is stored in ThreadData.
    Go(*mut ThreadData, Obj),
}

#[inline(never)]
fn prepare_switch(py: Python<'_>, target: &Bound<'_, Greenlet>, passing: Passing) -> PyResult<Prepared> {
    let td = thread_data(py)?;
    // SAFETY: this thread's live data; see module docs on in-flight values.
    unsafe {
        drain_pending_kills(py, td);
        let mut t: &Bound<'_, Greenlet> = target;
        let mut owned;
        loop {
            let c = t.get().coro();
            match c.status.get() {
                Status::Active | Status::Unstarted => break,
                Status::Dead => match c.parent.get(py) {
                    Some(p) => {
                        owned = p.into_bound(py);
                        t = &*(&owned as *const Bound<'_, Greenlet>);
                    }
                    None => return Err(error_new("cannot switch to a dead greenlet that has no parent")),
                },
            }
        }
        let tp = t.clone().unbind();
        check_same_thread(py, td, &tp)?;
        if tp.is((*td).current.bind(py)) {
            return Ok(Prepared::Deliver(super::deliver(py, passing)));
        }
        if tp.get().coro().status.get() == Status::Unstarted {
            // Looking up `run` may run Python code that switches or reparents
            // the greenlet: done before anything is put in flight.
            if let Err(e) = prepare_start(py, td, tp.bind(py)).and_then(|_| check_same_thread(py, td, &tp)) {
                (*td).starting_run = None;
                return Err(e);
            }
        }
        if tp.get().coro().status.get() == Status::Dead {
            return Err(error_new("the greenlet finished while its run attribute was looked up"));
        }
        match tp.get().coro().fault.get() {
            Fault::None => {}
            Fault::Switch => {
                // A test's injected failure (testing.rs): backed out like the
                // errors above, before anything is in flight.
                (*td).starting_run = None;
                let started = tp.get().coro().status.get() == Status::Active;
                drop(passing);
                return Err(super::testing::switch_error(started));
            }
            Fault::Fatal => {
                // Where a failing stack switch could not be backed out: the
                // running greenlet's state is saved out of the thread state,
                // as `switch_stack` does first. Checked here, not there, so
                // that real switches pay nothing for it.
                // (The blob is borrowed for the save only, which runs no
                // Python code.)
                let cc = (*td).current.get().coro();
                if cc.status.get() == Status::Active {
                    (*cc.state_ptr()).save(std::ptr::null_mut());
                }
                super::testing::fatal();
            }
        }
        (*td).passing = Some(passing);
        // The target stays referenced: by the caller's `target`, or by the
        // parent chain that led from it to `tp`.
        Ok(Prepared::Go(td, tp.as_ptr()))
    }
}

fn check_same_thread(py: Python<'_>, td: *mut ThreadData, t: &Py<Greenlet>) -> PyResult<()> {
    let tc = t.get().coro();
    // SAFETY: this thread's live data; the borrow ends with the comparison.
    if tc.thread_is(unsafe { &(*td).record }) {
        return Ok(());
    }
    if !tc.thread_alive() {
        return Err(error_new("cannot switch to a different thread (which happens to have exited)"));
    }
    // A reference of its own: the reprs may run Python code that switches,
    // which replaces `(*td).current`.
    // SAFETY: this thread's live data, read for the clone only.
    let current = unsafe { (*td).current.clone_ref(py) };
    Err(error_new(&format!(
        "Cannot switch to a different thread\n\tCurrent:  {}\n\tExpected: {}",
        current.bind(py).repr()?,
        t.bind(py).repr()?
    )))
}

/// Looks up `run` before the stack moves, so a missing one fails in the caller.
unsafe fn prepare_start(py: Python<'_>, td: *mut ThreadData, t: &Bound<'_, Greenlet>) -> PyResult<()> {
    let run = t.getattr(pyo3::intern!(py, "run"))?;
    if t.get().coro().status.get() == Status::Unstarted {
        // SAFETY: this thread's live data.
        unsafe { (*td).starting_run = Some(run.unbind()) };
    }
    // Otherwise the lookup itself started it (greenlet allows that): the
    // caller's switch then goes to the running greenlet like any other.
    Ok(())
}

/// Runs in the target once its stack and interpreter state are in place: makes
/// it current, calls the tracer, releases the origin, returns what it was sent.
/// `td` is this thread's data, kept in the switching frame (a coroutine
/// resumes on the thread it was suspended on).
unsafe fn arrived(py: Python<'_>, td: *mut ThreadData) -> PyResult<Py<PyAny>> {
    // SAFETY: this thread's live data; the GIL is held.
    unsafe {
        // A scheduler's switch carries nothing, and tracing is rare: tested
        // in place, without moving the (72-byte) value in flight about.
        if matches!((*td).passing, Some(Passing::Empty)) && (*td).trace.is_none() {
            // Written over, not dropped: `Empty` owns nothing (and the drop
            // glue is an out-of-line call).
            std::ptr::write(&raw mut (*td).passing, None);
            // Dropped through `Bound`, as in trace_and_release.
            if let Some(o) = (*td).switching_from.take() {
                drop(o.into_bound(py));
            }
            return Ok(py.None());
        }
    }
    // SAFETY: as for this function.
    unsafe { arrived_general(py, td) }
}

/// `arrived` for a value in flight, or with a tracer.
#[inline(never)]
unsafe fn arrived_general(py: Python<'_>, td: *mut ThreadData) -> PyResult<Py<PyAny>> {
    // SAFETY: this thread's live data.
    let passing = unsafe { (*td).passing.take() }.unwrap_or_else(|| Passing::Raise(error_new("switched to without a value")));
    // SAFETY: `td` is this thread's live data, as trace_and_release needs.
    let passing = unsafe { trace_and_release(py, td, passing) };
    super::deliver(py, passing)
}

/// Common tail of every arrival: the origin was saved in `switching_from`.
unsafe fn trace_and_release(py: Python<'_>, td: *mut ThreadData, passing: Passing) -> Passing {
    // SAFETY: this thread's live data.
    let origin = unsafe { (*td).switching_from.take() };
    // SAFETY: this thread's live data; the GIL is held.
    let tracer = unsafe { (*td).trace.as_ref().map(|t| t.clone_ref(py)) };
    let mut passing = passing;
    if let (Some(tracer), Some(origin)) = (tracer, origin.as_ref()) {
        let event = if matches!(passing, Passing::Raise(_)) { "throw" } else { "switch" };
        // SAFETY: this thread's live data; the GIL is held.
        let target = unsafe { (*td).current.clone_ref(py) };
        if let Err(e) = tracer.call1(py, (PyString::new(py, event), (origin.clone_ref(py), target))) {
            // A failing tracer is removed and its error replaces the value.
            // SAFETY: this thread's live data; the GIL is held.
            unsafe { (*td).trace = None };
            passing = Passing::Raise(e);
        }
    }
    // Dropped through `Bound`: `Py`'s drop would first ask a thread-local
    // whether this thread is attached, which it is.
    if let Some(o) = origin {
        drop(o.into_bound(py));
    }
    passing
}

/// Moves the stack to an active `target` and restores its interpreter state.
#[inline(never)]
unsafe fn switch_stack(td: *mut ThreadData, target: Obj) {
    // SAFETY: GIL held; `td` is this thread's; `target` is alive (the caller
    // holds a reference until `current` takes one below) and of this thread.
    // The running coroutine's blob is borrowed for the save only (no Python
    // code runs in it), the target's (another coroutine's) goes to it raw;
    // the slices go to the switch raw, so no reference to either is live
    // while other coroutines run before this one resumes.
    unsafe {
        let cc = (*td).current.get().coro();
        let tc = payload(target).coro();
        if cc.status.get() == Status::Active {
            (*cc.state_ptr()).save(tc.state_ptr());
        } else {
            // Finished (`die` ran): it hands over what a save would.
            weft_pystate::Blob::hand_over(cc.state_ptr(), tc.state_ptr());
        }
        (*td).switching_to = target;
        let arrival = weft_stack::switch(cc.slice_ptr(), tc.slice_ptr());
        debug_assert_eq!(arrival, Arrival::Resumed);
        land(td)
    }
}

/// After the stack moved: we are `switching_to`; restore it and make it current.
/// `td` is this thread's data (as kept in the resumed frame: a coroutine
/// resumes on the thread it was suspended on).
unsafe fn land(td: *mut ThreadData) {
    // SAFETY: called right after a switch, on the target's stack, with the
    // GIL; the target's blob is borrowed for the restore only, which runs no
    // Python code.
    unsafe {
        let target = (*td).switching_to;
        (*payload(target).coro().state_ptr()).restore();
        make_current(td, target);
    }
}

unsafe fn make_current(td: *mut ThreadData, target: Obj) {
    // SAFETY: `target` is a live greenlet object; `current` takes a new reference
    // and the origin's is kept until `trace_and_release`.
    unsafe {
        let py = Python::assume_attached();
        let new: Py<Greenlet> = Bound::from_borrowed_ptr(py, target).cast_into_unchecked::<Greenlet>().unbind();
        let record = &(*td).record;
        record.current.store(target, std::sync::atomic::Ordering::Release);
        let old = std::mem::replace(&mut (*td).current, new);
        (*td).switching_from = Some(old);
    }
}

/// A greenlet object pointer; the object is kept alive by whoever passes it.
type Obj = *mut ffi::PyObject;

/// The Rust payload of a greenlet object.
unsafe fn payload<'a>(p: Obj) -> &'a Greenlet {
    // SAFETY: `p` is a live object of type greenlet (or a subclass).
    unsafe {
        let py = Python::assume_attached();
        let b = pyo3::Borrowed::from_ptr(py, p).cast_unchecked::<Greenlet>();
        &*(b.get() as *const Greenlet)
    }
}

/// Starts `target`: the new coroutine owns the C stack below `marker`.
#[inline(never)]
unsafe fn start(td: *mut ThreadData, target: Obj) {
    let marker = core::hint::black_box(0usize);
    // SAFETY: `marker` stays alive while this frame does, which is as long as the
    // origin is suspended in `initial_stub` below (invariant S4 of weft-stack).
    // The target's slice is borrowed for `begin` only, which runs no Python
    // code; the running one's goes raw.
    unsafe {
        let tc = payload(target).coro();
        (*tc.slice_ptr()).begin(&marker as *const usize as *mut u8, (*td).current.get().coro().slice_ptr());
        tc.status.set(Status::Active);
        initial_stub(td, target);
    }
    core::hint::black_box(&marker);
}

#[inline(never)]
unsafe fn initial_stub(td: *mut ThreadData, target: Obj) {
    // SAFETY: as in `switch_stack`; on the new stack, the target's slice is
    // borrowed for `mark_running` only (it runs no code), and its blob goes
    // to `run_new` raw: the coroutine's whole life runs inside that call.
    unsafe {
        let cc = (*td).current.get().coro();
        if cc.status.get() == Status::Active {
            // (`target` starts afresh from the thread state: run_new.)
            (*cc.state_ptr()).save(payload(target).coro().state_ptr());
        }
        (*td).switching_to = target;
        match weft_stack::switch(cc.slice_ptr(), payload(target).coro().slice_ptr()) {
            Arrival::Resumed => land(td),
            Arrival::Started => {
                let tc = payload(target).coro();
                (*tc.slice_ptr()).mark_running();
                // A body that is a builtin function (a tasklet of
                // `channel.receive`, say) runs no Python frame of its own: it
                // starts without a data-stack chunk, which is most of what a
                // suspended coroutine of that kind would hold.
                let c_body = (*td).starting_run.as_ref().is_some_and(|r| ffi::PyCFunction_CheckExact(r.as_ptr()) != 0);
                weft_pystate::Blob::run_new(tc.state_ptr(), ts(), !c_body, body_entry, target as *mut c_void);
                // run_new only returns when no data stack could be allocated.
                ffi::Py_FatalError(c"weft: out of memory starting a greenlet".as_ptr());
            }
        }
    }
}

unsafe extern "C-unwind" fn body_entry(arg: *mut c_void) {
    let me = arg as Obj;
    // The call of `run` happens in this small frame, which stays on the
    // greenlet's stack while it runs; setup and teardown are helpers.
    // SAFETY: `me` is the greenlet this new stack was made for, alive while
    // it runs; body_begin runs once, first thing on that stack.
    let (run, args, kwargs) = no_unwind(|| unsafe { body_begin(me) });
    let result = if run.is_null() {
        std::ptr::null_mut()
    } else {
        // SAFETY: references owned by our Coro's `call` (see body_begin),
        // which only this frame takes back; GIL held; `me` is running, so alive.
        unsafe {
            let r = ffi::PyObject_Call(run, args, kwargs);
            payload(me).coro().call.set(None);
            r
        }
    };
    // SAFETY: `me` is still alive (running), and `result` is the new
    // reference (or null with an exception set) body_end expects.
    no_unwind(|| unsafe { body_end(me, result) });
    unreachable!("a finished greenlet was resumed");
}

/// No unwinding may cross the frames of a switch: a panic there is fatal.
fn no_unwind<R>(f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            eprintln!("weft: a Rust panic escaped a greenlet body; aborting");
            std::process::abort();
        }
    }
}

/// Makes the new greenlet current and returns (run, args, kwargs) to call,
/// borrowed from the Coro's `call`, or a null `run` with the exception to raise
/// set.
#[inline(never)]
unsafe fn body_begin(me: Obj) -> (Obj, Obj, Obj) {
    // SAFETY: we are the running greenlet `me`, with the GIL.
    unsafe {
        let py = Python::assume_attached();
        let td = thread_data_if_any().expect("thread data in a new greenlet");
        make_current(td, me);
        let passing = (*td).passing.take().unwrap_or_else(|| Passing::Raise(error_new("started without a value")));
        let run = (*td).starting_run.take();
        let passing = trace_and_release(py, td, passing);
        payload(me).coro().run.set(None);
        let null = std::ptr::null_mut();
        match (passing, run) {
            (Passing::Args(a, k), Some(run)) => {
                let ptrs = (run.as_ptr(), a.as_ptr(), k.as_ref().map_or(null, |k| k.as_ptr()));
                payload(me).coro().call.set(Some((run, a, k)));
                ptrs
            }
            (Passing::Args(..), None) => {
                error_new("greenlet started without a run callable").restore(py);
                (null, null, null)
            }
            (Passing::Raise(e), _) => {
                e.restore(py);
                (null, null, null)
            }
            (Passing::Empty, _) => {
                error_new("greenlet started without arguments").restore(py);
                (null, null, null)
            }
        }
    }
}

/// Hands `result` (a new reference, or null with an exception set) to the
/// first live parent; never returns.
#[inline(never)]
unsafe fn body_end(me: Obj, result: Obj) {
    // SAFETY: we are the running greenlet `me`, with the GIL.
    unsafe {
        let py = Python::assume_attached();
        let td = thread_data_if_any().expect("thread data in a finishing greenlet");
        let result = Bound::from_owned_ptr_or_err(py, result).map(|b| b.unbind());
        if payload(me).coro().finish.get() == Finish::Scheduler {
            crate::stackless::body_done(py, td, result);
        }
        let died_of_exit = matches!(&result, Err(e) if e.is_instance_of::<GreenletExit>(py));
        let outcome = match handle_exit(py, result) {
            Ok(v) => Passing::Args(PyTuple::new(py, [v]).expect("1-tuple").unbind(), None),
            Err(e) => Passing::Raise(e),
        };
        die_and_switch_to_parent(py, td, me, outcome, died_of_exit);
    }
}

/// greenlet's rule: a GreenletExit that ends a greenlet becomes its return value.
pub(crate) fn handle_exit(py: Python<'_>, r: PyResult<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    match r {
        Err(e) if e.is_instance_of::<GreenletExit>(py) => Ok(e.into_value(py).into_any()),
        other => other,
    }
}

/// `died_of_exit`: `me` ended by GreenletExit, whose instance is the value in
/// `outcome`. greenlet hands that instance itself (not a 1-tuple) to the
/// parent as its switch arguments: a suspended parent's switch returns it, as
/// here, but an unstarted parent's `run` is called with no arguments (greenlet
/// 3.5.6's g_handle_exit and inner_bootstrap: PyObject_Call reads the
/// exception as an empty argument tuple), so that is what weft does.
unsafe fn die_and_switch_to_parent(py: Python<'_>, td: *mut ThreadData, me: Obj, outcome: Passing, died_of_exit: bool) -> ! {
    // SAFETY: we are `me`, running, with the GIL; after the switch below this
    // stack is never used again.
    unsafe {
        die(me);
        let mc = payload(me).coro();
        // Walk up the parents: the first live one gets the outcome; an unstarted
        // one that cannot start passes its failure on to the next.
        let mut outcome = outcome;
        let mut p = mc.parent.get(py);
        while let Some(g) = p {
            let status = g.get().coro().status.get();
            let here = g.get().coro().thread_is(&(*td).record);
            let next = g.get().coro().parent.get(py);
            // An unstarted parent after a GreenletExit: `run()` (see above);
            // the exit value is kept in case looking up `run` starts it.
            let mut exit_value = None;
            if died_of_exit && here && status == Status::Unstarted && matches!(outcome, Passing::Args(..)) {
                exit_value = Some(std::mem::replace(&mut outcome, Passing::Args(PyTuple::empty(py).unbind(), None)));
            }
            if status != Status::Dead && here && prepare_ok(py, td, &g, status, &mut outcome) {
                // `g` stays referenced by the parent chain of `me`, which the
                // target releases only once it runs.
                let target = g.as_ptr();
                (*td).passing = Some(outcome);
                // Nothing owned may stay in this frame: it never returns.
                drop(next);
                // Re-read: looking up `run` may have started it meanwhile.
                if g.get().coro().status.get() == Status::Active {
                    if let Some(v) = exit_value.take() {
                        // Started meanwhile: its switch returns the value
                        // (dropping the empty tuple runs no code).
                        (*td).passing = Some(v);
                    }
                    drop(g);
                    switch_stack(td, target);
                    unreachable!("a finished greenlet was resumed");
                }
                // The exit value may be its last reference: released here,
                // before the stack moves (what it runs, as the lookup of
                // `run` above may, runs in this finished greenlet's frame).
                drop(exit_value);
                drop(g);
                start(td, target);
                unreachable!("a finished greenlet was resumed");
            }
            p = next;
        }
        // No parent in this thread can take the outcome (a parent was moved to
        // another thread): the thread's main greenlet gets it instead of a crash.
        let main = (*td).main.as_ptr();
        (*td).passing = Some(match outcome {
            Passing::Raise(e) => Passing::Raise(e),
            Passing::Args(..) | Passing::Empty => Passing::Raise(error_new("a finished greenlet's parents are all in other threads or dead")),
        });
        switch_stack(td, main);
        ffi::Py_FatalError(c"weft: a finished greenlet has no live parent to return to".as_ptr())
    }
}

/// Mechanism shared by every policy: the running coroutine `me` ends; its
/// interpreter state is finished and its stack is never switched back to.
unsafe fn die(me: Obj) {
    // SAFETY: `me` is the running coroutine, with the GIL. Its blob goes to
    // `finish` raw (the releases there may run Python code, which may come
    // back to this coroutine); its slice is borrowed for `mark_dead` only,
    // which runs no code.
    unsafe {
        let mc = payload(me).coro();
        weft_pystate::Blob::finish(mc.state_ptr(), ts());
        mc.status.set(Status::Dead);
        (*mc.slice_ptr()).mark_dead();
    }
}

/// A scheduler's switch: from the running coroutine to `target`, a live
/// (started or unstarted) coroutine of this thread other than the running
/// one, carrying `passing`. An unstarted target is started with `run`
/// called with the arguments in `passing` (which must then be `Args`).
/// The caller has checked the thread and the target's state: nothing here
/// can fail before the stack moves.
///
/// # Safety
/// GIL held; `td` is this thread's live data; `target` is a greenlet object
/// kept alive by the caller until it runs (by the scheduler's queues).
pub(crate) unsafe fn switch_to_coroutine(py: Python<'_>, td: *mut ThreadData, target: Obj, passing: Passing, run: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    // SAFETY: the caller guarantees what `move_to` needs (GIL held, `td`
    // this thread's data, `target` a live coroutine of this thread other
    // than the running one, kept alive until it runs); `arrived` runs on our
    // own stack once something switches back here, with `td` still ours.
    unsafe {
        move_to(td, target, passing, run);
        arrived(py, td)
    }
}

/// A scheduler's switch whose value in flight is already in
/// `(*td).passing` (see `stage_passing`). Its error is boxed, so that the
/// scheduler frames that stay on a suspended coroutine's stack (and are
/// copied with it at every switch) hold one word for it, not a `PyErr`.
///
/// # Safety
/// As for `switch_to_coroutine`, and the value in flight was staged.
pub(crate) unsafe fn switch_staged(py: Python<'_>, td: *mut ThreadData, target: Obj, run: Option<Py<PyAny>>) -> Result<Py<PyAny>, Box<PyErr>> {
    // SAFETY: as in `switch_to_coroutine`; the staged value is in `td`.
    unsafe {
        move_staged(td, target, run);
        arrived_boxed(py, td)
    }
}

/// `arrived` with its error boxed, in a frame of its own that only exists
/// after the switch.
#[inline(never)]
unsafe fn arrived_boxed(py: Python<'_>, td: *mut ThreadData) -> Result<Py<PyAny>, Box<PyErr>> {
    // SAFETY: called on our own stack after a switch back, as `arrived` needs.
    unsafe { arrived(py, td) }.map_err(Box::new)
}

/// Puts the value a scheduler's next switch carries in flight.
///
/// # Safety
/// `td` is this thread's live data.
pub(crate) unsafe fn stage_passing(td: *mut ThreadData, passing: Passing) {
    // SAFETY: the caller's contract: only this thread touches `td`.
    unsafe { (*td).passing = Some(passing) };
}

/// The stack moves to `target` (started if it has not), carrying `passing`.
///
/// # Safety
/// As for `switch_to_coroutine`.
unsafe fn move_to(td: *mut ThreadData, target: Obj, passing: Passing, run: Option<Py<PyAny>>) {
    // SAFETY: `td` is this thread's live data (caller's contract); the rest
    // is `move_staged`'s contract, which ours includes.
    unsafe {
        (*td).passing = Some(passing);
        move_staged(td, target, run);
    }
}

/// `move_to` with the value in flight already in `td`. Inlined into the
/// scheduler's switch (fat LTO, 3.11, Ir/message: channel ~2293 -> ~2280,
/// select ~2695 -> ~2658), although the merged frame keeps 32 more bytes on a
/// suspended tasklet's stack.
///
/// # Safety
/// As for `switch_to_coroutine`.
#[inline(always)]
unsafe fn move_staged(td: *mut ThreadData, target: Obj, run: Option<Py<PyAny>>) {
    // SAFETY: `td` is this thread's live data (caller's contract), so the
    // writes race with nothing; `target` is live, of this thread and not
    // running, so `start` (unstarted) or `switch_stack` (suspended) may move
    // the stack to it; the values in flight live in `td`, not on this stack.
    unsafe {
        if payload(target).coro().status.get() == Status::Unstarted {
            (*td).starting_run = run;
            start(td, target);
        } else {
            switch_stack(td, target);
        }
    }
}

/// A scheduler's exit: the running coroutine `me` has finished and `target`
/// (as for `switch_to_coroutine`) runs next. Never returns.
///
/// # Safety
/// As for `switch_to_coroutine`, and the caller's frame owns nothing: this
/// stack is never used again.
pub(crate) unsafe fn exit_to_coroutine(td: *mut ThreadData, me: Obj, target: Obj, passing: Passing, run: Option<Py<PyAny>>) -> ! {
    // SAFETY: `me` is the running coroutine (caller's contract), so `die`
    // may finish its interpreter state; the caller's frame owns nothing, so
    // leaving this stack for good leaks nothing; `move_to` gets the same
    // guarantees as from `switch_to_coroutine`.
    unsafe {
        die(me);
        move_to(td, target, passing, run);
        ffi::Py_FatalError(c"weft: a finished tasklet was resumed".as_ptr())
    }
}

/// For a dying greenlet's parent walk: an unstarted parent must be startable
/// here; if not, its failure becomes the outcome passed further up.
unsafe fn prepare_ok(py: Python<'_>, td: *mut ThreadData, g: &Py<Greenlet>, status: Status, outcome: &mut Passing) -> bool {
    if status == Status::Active {
        return true;
    }
    // SAFETY: `prepare_start` needs the GIL and this thread's live data,
    // which our caller (the finishing greenlet's parent walk) holds and
    // passes as `td`; `g` is a live greenlet it holds a reference to.
    match unsafe { prepare_start(py, td, g.bind(py)) }.and_then(|_| check_same_thread(py, td, g)) {
        Ok(()) => true,
        Err(e) => {
            // SAFETY: this thread's live data.
            unsafe { (*td).starting_run = None };
            *outcome = Passing::Raise(e);
            false
        }
    }
}

/// Kills greenlets of this thread whose last reference another thread dropped.
pub(crate) unsafe fn drain_pending_kills(py: Python<'_>, td: *mut ThreadData) {
    // SAFETY: the caller passes this thread's `ThreadData`, which lives
    // until the thread exits; the GIL (`py`) serialises access to it, and
    // the borrow of its record ends before any kill runs Python code.
    let record: &ThreadRecord = unsafe { &(*td).record };
    if !record.kills.may_have_items() {
        return; // every switch comes here: one load, nothing built
    }
    let pending: Vec<Py<Greenlet>> = record.kills.take();
    for g in pending {
        kill(py, g.bind(py));
    }
}

/// Raises GreenletExit in a suspended greenlet of this thread, with the running
/// greenlet as its parent so that it comes back here when it exits.
pub(crate) fn kill(py: Python<'_>, g: &Bound<'_, Greenlet>) {
    kill_with(py, g, GreenletExit::new_err(()))
}

/// `kill`, raising `err` (GreenletExit or a subclass, so that greenlet's
/// rules turn it into a quiet return). A scheduler's coroutine falls back to
/// greenlet's policy: it comes back here when it exits.
pub(crate) fn kill_with(py: Python<'_>, g: &Bound<'_, Greenlet>, err: PyErr) {
    let c = g.get().coro();
    c.finish.set(Finish::Parent);
    if c.status.get() != Status::Active || c.is_main {
        return;
    }
    let Ok(cur) = super::getcurrent_py(py) else { return };
    let old_parent = c.parent.replace(Some(cur));
    let r = switch_to(py, g, Passing::Raise(err));
    if let Err(e) = r {
        e.write_unraisable(py, Some(g.as_any()));
    }
    // A greenlet that refused to die keeps the parent it had (the one it
    // has now is dropped once that is back in place).
    if c.status.get() == Status::Active {
        c.parent.set(old_parent);
    } else {
        drop(old_parent);
    }
}

/// Drops a greenlet that is still suspended and will never run again (its
/// thread died, or it refused to die): its stack bytes are forgotten and it
/// leaves the running slice's chain.
pub(crate) fn forget_suspended(_py: Python<'_>, c: &Coro) {
    if c.status.get() != Status::Active || c.is_main {
        return;
    }
    if let Some(td) = thread_data_if_any() {
        // SAFETY: this thread's live data; the chain only holds this thread's
        // slices; both slices go to `unlink` raw.
        unsafe {
            if c.thread_is(&(*td).record) {
                let cur = (*td).current.get().coro();
                Slice::unlink(cur.slice_ptr(), c.slice_ptr());
            }
        }
    }
    // SAFETY: the slice is borrowed for `abandon` only, which runs no code,
    // so no other reference to it is formed meanwhile (`Coro`'s rule).
    unsafe { (*c.slice_ptr()).abandon() };
    c.status.set(Status::Dead);
}

/// greenlet's rule for a greenlet left suspended by a thread that has exited
/// (it can never run again: its stack was that thread's): once something
/// looks at whether it is dead (`dead`, `repr`) or drops it, it is retired.
/// Its saved stack bytes go, its Python data stack is given back when nothing
/// else reaches its frames (see `Blob::release_orphaned`), and it is dead.
/// The greenlet that was running when its thread exited has no saved state
/// and is left alone.
pub(crate) fn retire_orphan(g: &Greenlet, obj: Obj) {
    let c = g.coro();
    let thread_gone = !c.thread_alive();
    if c.status.get() != Status::Active || c.is_main || !thread_gone {
        return;
    }
    if c.thread_is_running(obj) {
        return;
    }
    // Dead first: giving the data stack back may run Python code, which
    // must find it retired already.
    c.status.set(Status::Dead);
    c.orphaned.set(true);
    // SAFETY: the slice is borrowed for `abandon` only, which runs no code,
    // so no other reference to it is formed meanwhile (`Coro`'s rule).
    unsafe { (*c.slice_ptr()).abandon() };
    // SAFETY: callers hold the GIL; its thread exited while it was suspended,
    // so its blob holds its saved state, and it never runs again; the blob
    // sits in the coroutine's box, which `g` keeps alive, and goes raw: no
    // reference to it is live across the call (which may run Python code).
    unsafe { weft_pystate::Blob::release_orphaned(c.state_ptr()) };
    // The `run` call it never returned from: last, as releasing may run
    // code, which finds the slot empty already.
    c.call.set(None);
}

/// gr_frame of a suspended greenlet of this thread.
pub(crate) fn suspended_top_frame(py: Python<'_>, g: &Greenlet) -> PyResult<Py<PyAny>> {
    // SAFETY: GIL held; the greenlet is suspended in this thread; its blob
    // goes raw, no reference to it live across the call (which allocates).
    let f = unsafe { weft_pystate::Blob::top_frame(g.coro().state_ptr(), ts()) };
    if f.is_null() {
        return match PyErr::take(py) {
            Some(e) => Err(e),
            None => Ok(py.None()),
        };
    }
    // SAFETY: a new reference from pystate.c.
    Ok(unsafe { Bound::from_owned_ptr(py, f.cast()) }.unbind())
}
