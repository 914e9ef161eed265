//! `run()`: the scheduler loop of a paused tasklet (the main one, or any
//! tasklet for a nested `run()`), and preemption.
//!
//! A *tick* here is one bytecode instruction, counted through CPython's
//! C-level trace hook (`PyEval_SetTrace`) with per-instruction events turned
//! on (`f_trace_opcodes`) for every frame entered while the hook is active;
//! frames that were already running when it was installed count line
//! events instead. Stock CPython has no instruction counter of its own to
//! hook (Stackless patched the eval loop); instruction events are the one
//! that also fires in a one-instruction loop (`while True: pass`). The hook is installed only while a
//! `run(timeout=N)` is active in this thread (it replaces any
//! `sys.settrace` tracer for that time and puts it back after), so
//! cooperative scheduling pays nothing. An atomic tasklet is never
//! interrupted. The hook is per thread: preemption works in every thread.
use std::cell::Cell;
use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::greenlet::{thread_data, ThreadData};

use super::sched;
use super::tasklet::Tasklet;

/// One active `run()`.
pub(crate) struct Watch {
    pub owner: Py<Tasklet>,
    /// Ticks a tasklet may run (0: no preemption).
    limit: u64,
    ticks: u64,
    soft: bool,
    total: bool,
    soft_due: bool,
    soft_exited: bool,
    interrupted: Option<Py<Tasklet>>,
}

impl Watch {
    /// A tasklet starts its turn: a fresh budget (unless `totaltimeout`).
    pub(crate) fn arrived(&mut self) {
        if !self.total {
            self.ticks = 0;
        }
    }

    /// With `soft`, a budget ran out: the scheduler returns to `run()` at
    /// this scheduling point instead of interrupting the tasklet.
    pub(crate) fn soft_exit_due(&mut self) -> bool {
        if self.soft_due {
            self.soft_due = false;
            self.soft_exited = true;
            return true;
        }
        false
    }
}

thread_local! {
    /// Active `run(timeout)` calls of this thread, and the tracer they replaced.
    static HOOK_USERS: Cell<usize> = const { Cell::new(0) };
}

/// Installs the tick hook for one `run(timeout)`; dropping it takes it away
/// (the outermost one gives back the tracer it replaced).
struct TickHook {
    saved: Option<Py<PyAny>>,
}

impl TickHook {
    fn install(py: Python<'_>) -> PyResult<TickHook> {
        let first = HOOK_USERS.with(|c| {
            c.set(c.get() + 1);
            c.get() == 1
        });
        let mut saved = None;
        if first {
            let t = py.import("sys")?.call_method0("gettrace")?;
            saved = (!t.is_none()).then(|| t.unbind());
            // SAFETY: GIL held; `tick` has the Py_tracefunc signature and
            // needs no object.
            unsafe { ffi::PyEval_SetTrace(Some(tick), std::ptr::null_mut()) };
        }
        Ok(TickHook { saved })
    }
}

impl Drop for TickHook {
    fn drop(&mut self) {
        let last = HOOK_USERS.with(|c| {
            c.set(c.get() - 1);
            c.get() == 0
        });
        if last {
            // SAFETY: TickHook lives in `run_watched`, which holds the GIL.
            let py = unsafe { Python::assume_attached() };
            match self.saved.take() {
                Some(t) => {
                    if let Err(e) = py
                        .import("sys")
                        .and_then(|s| s.call_method1("settrace", (t,)))
                    {
                        e.write_unraisable(py, None);
                    }
                }
                // SAFETY: PyEval_SetTrace needs the GIL (held: `py` above is
                // this call's token) and sets this thread's hook only;
                // clearing it leaves no function pointer behind to call.
                None => unsafe { ffi::PyEval_SetTrace(None, std::ptr::null_mut()) },
            }
        }
    }
}

/// The trace hook: counts a tick; at the limit, takes the running tasklet
/// out of the run queue and switches to the `run()` that set the limit.
unsafe extern "C" fn tick(
    _obj: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: CPython calls trace functions with the GIL held.
    let py = unsafe { Python::assume_attached() };
    if !sched::exists() {
        return 0;
    }
    if what == ffi::PyTrace_CALL && !frame.is_null() {
        // SAFETY: a live frame object CPython passes us (borrowed).
        let f = unsafe { Bound::from_borrowed_ptr(py, frame.cast()) };
        if f.setattr(pyo3::intern!(py, "f_trace_opcodes"), true)
            .is_err()
        {
            // SAFETY: GIL held; nothing to report from inside a trace call.
            unsafe { ffi::PyErr_Clear() };
        }
        return 0;
    }
    if what != ffi::PyTrace_OPCODE && what != ffi::PyTrace_LINE {
        return 0;
    }
    let fire = sched::with_existing(|s| {
        let cur_atomic = s.current.get().atomic();
        let w = s.watchers.last_mut()?;
        if w.limit == 0 {
            return None;
        }
        w.ticks += 1;
        if w.ticks < w.limit {
            return None;
        }
        let cur_is_owner = s.current.as_ptr() == w.owner.as_ptr();
        if cur_is_owner || cur_atomic {
            return None;
        }
        w.ticks = 0;
        if w.soft {
            w.soft_due = true;
            return None;
        }
        let victim = s.current.clone_ref(py);
        let owner = w.owner.clone_ref(py);
        w.interrupted = Some(victim.clone_ref(py));
        let gone = sched::unlink(s, victim.get());
        Some((owner, gone))
    });
    let Some((owner, gone)) = fire else { return 0 };
    drop(gone);
    let Ok(td) = thread_data(py) else { return 0 };
    // SAFETY: GIL held, our own thread state. The tasklet leaves in the
    // middle of a trace call, which CPython marks by "tracing": whoever runs
    // next must not inherit the mark (it would never be traced, hence never
    // preempted), so it is given back for the time this tasklet is away.
    let ts = unsafe { ffi::PyThreadState_Get() };
    // SAFETY: as above; balanced by the EnterTracing below.
    unsafe { ffi::PyThreadState_LeaveTracing(ts) };
    let r = sched::switch_to(py, td, owner, None).map_err(|e| *e);
    // SAFETY: back in this tasklet, inside the same trace call.
    unsafe { ffi::PyThreadState_EnterTracing(ts) };
    match r {
        Ok(_) => 0,
        Err(e) => {
            // Killed or thrown into while interrupted: raised in its frame.
            e.restore(py);
            -1
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_watched(
    py: Python<'_>,
    td: *mut ThreadData,
    me: Py<Tasklet>,
    timeout: u64,
    threadblock: bool,
    soft: bool,
    _ignore_nesting: bool,
    total: bool,
) -> PyResult<Option<Py<Tasklet>>> {
    let gone = sched::with(py, |s| {
        let gone = sched::unlink(s, me.get());
        s.watchers.push(Watch {
            owner: me.clone_ref(py),
            limit: timeout,
            ticks: 0,
            soft,
            total,
            soft_due: false,
            soft_exited: false,
            interrupted: None,
        });
        gone
    })?;
    drop(gone);
    let hook = if timeout > 0 {
        Some(TickHook::install(py))
    } else {
        None
    };
    let result = match hook.as_ref().map(|h| h.as_ref().map(|_| ())) {
        Some(Err(_)) => Err(hook.unwrap().err().expect("checked")),
        _ => schedule_loop(py, td, &me, threadblock),
    };
    let stale = sched::with(py, |s| {
        let w = s.watchers.pop();
        sched::make_head(s, &me, me.get(), false);
        w
    })?;
    drop(stale);
    result
}

fn schedule_loop(
    py: Python<'_>,
    td: *mut ThreadData,
    me: &Py<Tasklet>,
    threadblock: bool,
) -> PyResult<Option<Py<Tasklet>>> {
    loop {
        let next = sched::with(py, |s| sched::pick_next(s, py))?;
        if next.as_ptr() == me.as_ptr() {
            let soft_exit = sched::with(py, |s| {
                s.watchers
                    .last_mut()
                    .is_some_and(|w| std::mem::take(&mut w.soft_exited))
            })?;
            let wait = sched::run_should_wait(py, threadblock)?;
            if !soft_exit && wait && sched::idle_wait(py)? {
                continue;
            }
            return Ok(None);
        }
        sched::switch_to(py, td, next, None).map_err(|e| *e)?;
        let (interrupted, soft_exit) = sched::with(py, |s| match s.watchers.last_mut() {
            Some(w) => (w.interrupted.take(), std::mem::take(&mut w.soft_exited)),
            None => (None, false),
        })?;
        if interrupted.is_some() {
            return Ok(interrupted);
        }
        if soft_exit {
            return Ok(None);
        }
    }
}
