//! `weft.stackless`'s engine: tasklets, channels and a scheduler per thread,
//! on weft's coroutine engine. A tasklet's coroutine finishes through
//! [`body_done`] (the scheduler's policy) instead of greenlet's "the parent
//! gets the result"; `schedule()`, `send()` and `receive()` are each one Rust
//! call, with at most one engine switch and no Python code in between.
//!
//! The run-queue and channel rules are `weft-sched`'s (no Python); this
//! module owns the Python-visible types and who runs next.
mod callbacks;
mod channel;
pub(crate) mod io;
mod park;
mod select;
pub(crate) mod exits;
pub(crate) mod sched;
mod tasklet;
mod tracing;
mod watchdog;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::greenlet::switch::exit_to_coroutine;
use crate::greenlet::{GreenletExit, Passing, ThreadData};

pub(crate) use channel::Channel;

/// A result with its error boxed: one word instead of a 64-byte `PyErr`.
/// The scheduler's frames that stay on a suspended tasklet's C stack (which
/// every switch copies) return this, so they stay small.
pub(crate) type Light<T> = Result<T, Box<PyErr>>;

/// Drops a reference with the attachment token in hand. `Py`'s own drop
/// first asks a thread-local whether this thread is attached (a
/// `__tls_get_addr` call in a shared library); the hot paths, which hold
/// `py`, skip that.
#[inline]
pub(crate) fn release<T>(py: Python<'_>, p: Py<T>) {
    drop(p.into_bound(py));
}
pub(crate) use tasklet::Tasklet;

/// The exception `raise typ(val)` with traceback `tb` raises (greenlet's checks).
pub(crate) fn make_exception(
    py: Python<'_>,
    typ: &Bound<'_, PyAny>,
    val: &Bound<'_, PyAny>,
    tb: &Bound<'_, PyAny>,
) -> PyResult<PyErr> {
    crate::greenlet::make_throw(py, typ, val, tb)
}

/// The scheduler's policy for a finished tasklet: its uncaught exception
/// goes to the error handler, else to the main tasklet (or the innermost
/// `run()`); the next runnable tasklet runs. Never returns.
///
/// # Safety
/// Called by the engine on the finished tasklet's own stack, with the GIL,
/// `td` this thread's data.
pub(crate) unsafe fn body_done(
    py: Python<'_>,
    td: *mut ThreadData,
    result: PyResult<Py<PyAny>>,
) -> ! {
    let (me, target, passing, run) = finish_current(py, td, result);
    // SAFETY: `finish_current` returned and dropped everything it owned; the
    // finished tasklet stays alive in `dying` until the next tasklet runs,
    // and `target` is the live coroutine of `current`.
    unsafe { exit_to_coroutine(td, me, target, passing, run) }
}

#[inline(never)]
fn finish_current(
    py: Python<'_>,
    td: *mut ThreadData,
    result: PyResult<Py<PyAny>>,
) -> (
    *mut pyo3::ffi::PyObject,
    *mut pyo3::ffi::PyObject,
    Passing,
    Option<Py<PyAny>>,
) {
    let me = sched::with_existing(|s| s.current.clone_ref(py));
    let err = match result {
        Ok(v) => {
            drop(v);
            None
        }
        // TaskletExit (a GreenletExit) ends a tasklet quietly.
        Err(e) if e.is_instance_of::<GreenletExit>(py) => None,
        Err(e) => callbacks::handle_error(py, e),
    };
    let held = me.get().finish();
    let gone = sched::with_existing(|s| sched::unlink(s, me.get()));
    drop((held, gone));
    let mut err = err;
    loop {
        let (next, passing) = match err.take() {
            Some(e) => {
                let owner = sched::with_existing(|s| {
                    s.watchers
                        .last()
                        .map(|w| w.owner.clone_ref(py))
                        .unwrap_or_else(|| s.main.clone_ref(py))
                });
                let from_chan = tasklet::unblock(py, owner.get());
                drop(from_chan);
                sched::with_existing(|s| sched::make_head(s, &owner, me.get(), false));
                (owner, Passing::Raise(e))
            }
            None => (
                sched::with_existing(|s| sched::pick_next(s, py)),
                Passing::Empty,
            ),
        };
        if callbacks::schedule_hook_set() {
            if let Err(e) =
                callbacks::call_schedule_hook(py, me.bind(py).as_any(), next.bind(py).as_any())
            {
                e.write_unraisable(py, None);
            }
        }
        if tracing::in_use() {
            if let Err(e) = tracing::on_switch(py, me.get(), next.get()) {
                e.write_unraisable(py, None);
            }
        }
        match next.get().prepare_to_run(py, td, passing).and_then(|(c, r, p)| sched::launch_site(py, td, c, r, p)) {
            Ok((coro, run, passing)) => {
                let me_coro = me.get().coro_ptr();
                let stale = sched::with_existing(|s| {
                    s.shared.current.store(next.as_ptr(), std::sync::atomic::Ordering::Relaxed);
                    let old = std::mem::replace(&mut s.current, next);
                    (s.dying.replace(me), old)
                });
                drop(stale);
                return (me_coro, coro, passing, run);
            }
            // The next one cannot start (no memory for its coroutine): the
            // failure goes to the main tasklet instead.
            Err(e) => err = Some(e),
        }
    }
}

/// `schedule()` for the running tasklet `me`: the next runnable runs and
/// `me` stays runnable (it is put in the ring if it was not), unless `remove`.
pub(crate) fn schedule_current(
    py: Python<'_>,
    td: *mut ThreadData,
    me: Py<Tasklet>,
    remove: bool,
) -> PyResult<()> {
    let (next, gone) = sched::with(py, |s| {
        sched::take_mail(s);
        let gone = if remove {
            sched::unlink(s, me.get())
        } else {
            if me.get().place() == tasklet::Place::Nowhere {
                sched::insert_back(s, me.clone_ref(py));
            }
            // One turn of the round: the head's successor becomes the head.
            s.ring.advance();
            None
        };
        (sched::pick_next(s, py), gone)
    })?;
    drop(gone);
    if next.as_ptr() == me.as_ptr() {
        return Ok(());
    }
    drop(me);
    sched::switch_to(py, td, next, None).map(|_| ()).map_err(|e| *e)
}

#[pyfunction]
#[pyo3(signature = (retval=None))]
fn schedule(py: Python<'_>, retval: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let (td, me) = sched::current_checked(py)?;
    schedule_current(py, td, me, false)?;
    match retval {
        Some(r) => Ok(r),
        None => Ok(getcurrent(py)?.into_any()),
    }
}

#[pyfunction]
#[pyo3(signature = (retval=None))]
fn schedule_remove(py: Python<'_>, retval: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let (td, me) = sched::current_checked(py)?;
    schedule_current(py, td, me, true)?;
    match retval {
        Some(r) => Ok(r),
        None => Ok(getcurrent(py)?.into_any()),
    }
}

/// Runs the tasklets of this thread until none is runnable (or, with
/// `timeout`, until one runs that many ticks: it is then returned).
#[pyfunction]
#[pyo3(signature = (timeout=0, threadblock=false, soft=false, ignore_nesting=false, totaltimeout=false))]
fn run(
    py: Python<'_>,
    timeout: i64,
    threadblock: bool,
    soft: bool,
    ignore_nesting: bool,
    totaltimeout: bool,
) -> PyResult<Option<Py<Tasklet>>> {
    if timeout < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "run(): timeout must be 0 (no preemption) or a positive number of ticks",
        ));
    }
    let (td, me) = sched::current_checked(py)?;
    watchdog::run_watched(
        py,
        td,
        me,
        timeout as u64,
        threadblock,
        soft,
        ignore_nesting,
        totaltimeout,
    )
}

/// The launcher coroutine's `run` (see `sched::Launcher`).
#[pyfunction]
fn _launcher_loop(py: Python<'_>) -> PyResult<()> {
    sched::launcher_loop(py)
}

pub(crate) fn launcher_loop_fn(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(wrap_pyfunction!(_launcher_loop, py)?.into_any().unbind())
}

#[pyfunction]
fn getcurrent(py: Python<'_>) -> PyResult<Py<Tasklet>> {
    sched::current_checked(py).map(|(_, t)| t).or_else(|_| sched::with(py, |s| s.current.clone_ref(py)))
}

#[pyfunction]
fn getmain(py: Python<'_>) -> PyResult<Py<Tasklet>> {
    sched::with(py, |s| s.main.clone_ref(py))
}

/// Runnable tasklets of this thread, the running one included.
#[pyfunction]
fn getruncount(py: Python<'_>) -> PyResult<usize> {
    let _ = sched::current_checked(py);
    sched::with(py, |s| {
        s.ring.len() + usize::from(s.current.get().place() == tasklet::Place::Nowhere)
    })
}

#[pyfunction]
fn getcurrentid(py: Python<'_>) -> PyResult<usize> {
    sched::with(py, |s| s.current.as_ptr() as usize)
}

#[pyfunction]
fn getthreads() -> Vec<u64> {
    sched::thread_ids()
}

/// `(main, current, runcount)` of a thread's scheduler (this thread's if
/// `thread_id` is None); another thread's main and current are not
/// reachable from here and are None.
#[pyfunction]
#[pyo3(signature = (thread_id=None))]
fn get_thread_info(
    py: Python<'_>,
    thread_id: Option<u64>,
) -> PyResult<(Py<PyAny>, Py<PyAny>, usize)> {
    let (here, main, cur, n) = sched::with(py, |s| {
        (
            s.shared.thread_id,
            s.main.clone_ref(py),
            s.current.clone_ref(py),
            s.ring.len(),
        )
    })?;
    match thread_id {
        None => Ok((main.into_any(), cur.into_any(), n.max(1))),
        Some(id) if id == here => Ok((main.into_any(), cur.into_any(), n.max(1))),
        Some(id) => match sched::thread_info_of(py, id) {
            Some(info) => Ok(info),
            None => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "no live thread with id {id} runs a tasklet scheduler (give an id from stackless.getthreads())"
            ))),
        },
    }
}

/// True if this thread has a scheduler (without making one).
#[pyfunction]
fn _scheduler_exists() -> bool {
    sched::exists()
}

/// `switch_trap(delta)`: adds `delta` to this thread's trap level and
/// returns the old level; while it is positive, any tasklet switch raises.
#[pyfunction]
fn switch_trap(py: Python<'_>, delta: i64) -> PyResult<i64> {
    sched::with(py, |s| {
        let old = s.switch_trap;
        s.switch_trap += delta;
        old
    })
}

/// weft always switches whole C stacks ("hard" switching, in Stackless's
/// words); there is no soft switching to enable. Returns False, and refuses
/// to pretend otherwise.
#[pyfunction]
#[pyo3(signature = (flag=None))]
fn enable_softswitch(flag: Option<Bound<'_, PyAny>>) -> PyResult<bool> {
    if let Some(f) = flag {
        if !f.is_none() && f.is_truthy()? {
            return Err(PyRuntimeError::new_err("weft.stackless has one kind of switch (the whole C stack is moved); soft switching cannot be enabled"));
        }
    }
    Ok(false)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let sl = PyModule::new(py, "stackless")?;
    sl.add_class::<Tasklet>()?;
    sl.add_class::<Channel>()?;
    channel::install_fast_send(py)?;
    sl.add_function(wrap_pyfunction!(schedule, &sl)?)?;
    sl.add_function(wrap_pyfunction!(schedule_remove, &sl)?)?;
    sl.add_function(wrap_pyfunction!(run, &sl)?)?;
    sl.add_function(wrap_pyfunction!(getcurrent, &sl)?)?;
    sl.add_function(wrap_pyfunction!(getmain, &sl)?)?;
    sl.add_function(wrap_pyfunction!(getruncount, &sl)?)?;
    sl.add_function(wrap_pyfunction!(getcurrentid, &sl)?)?;
    sl.add_function(wrap_pyfunction!(getthreads, &sl)?)?;
    sl.add_function(wrap_pyfunction!(get_thread_info, &sl)?)?;
    sl.add_function(wrap_pyfunction!(switch_trap, &sl)?)?;
    sl.add_function(wrap_pyfunction!(_scheduler_exists, &sl)?)?;
    sl.add_function(wrap_pyfunction!(enable_softswitch, &sl)?)?;
    sl.add_function(wrap_pyfunction!(park::park, &sl)?)?;
    sl.add_function(wrap_pyfunction!(park::_must_park, &sl)?)?;
    sl.add_function(wrap_pyfunction!(park::_thread_block_budget, &sl)?)?;
    sl.add_function(wrap_pyfunction!(io::_wait_fd, &sl)?)?;
    sl.add_function(wrap_pyfunction!(select::select, &sl)?)?;
    select::add_select_cases(&sl)?;
    sl.add_function(wrap_pyfunction!(select::_set_select_faces, &sl)?)?;
    callbacks::register(&sl)?;
    exits::register(&sl)?;
    m.add("stackless", sl)?;
    Ok(())
}
