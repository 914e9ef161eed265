//! Tasklets waiting for something other than a channel: the blocking waits
//! of `weft.execnet` (a channel item, a close, a reply), through the one seam
//! `weft.execnet._wait`. Decided per call, in the calling thread:
//!
//! * another tasklet of this thread is runnable: the tasklet *parks* (it
//!   leaves the run queue; the event's wake-up, set by the gateway's reader
//!   in another thread, posts it back to this thread's scheduler) and the
//!   others run;
//! * nothing else could run: the thread blocks as a plain thread does
//!   (keeping the gateway's direct read), in slices, so that a tasklet made
//!   runnable by another thread meanwhile is not kept waiting for long.
//!
//! A thread without a scheduler never gets here: it blocks as before.
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::event::PyEvent;

use super::sched;
use super::tasklet::Place;

/// True if the running tasklet should park rather than block its thread:
/// another tasklet of this thread is runnable now (woken by mail, or parked
/// with a deadline that has passed).
#[pyfunction]
pub(crate) fn _must_park(py: Python<'_>) -> PyResult<bool> {
    if !sched::exists() {
        return Ok(false);
    }
    sched::with(py, |s| {
        sched::take_mail(s);
        sched::wake_sleepers(s);
        s.ring.len() > 1 || (s.ring.len() == 1 && s.current.get().place() == Place::Nowhere)
    })
}

/// How the running code may wait for a gateway item (`Channel.receive`,
/// which can read the gateway itself while it blocks its thread): True,
/// block the thread (no scheduler here, or no other tasklet of the thread
/// waits for anything); False, park (another tasklet is runnable, or parked
/// on a wake-up from elsewhere, which must not wait behind this one); or a
/// number of seconds, block the thread at most that long at a time and ask
/// again (the others are blocked on channels: only another thread can wake
/// them, and its hand-off is then taken between slices).
#[pyfunction]
pub(crate) fn _thread_block_budget(py: Python<'_>) -> PyResult<Py<PyAny>> {
    use pyo3::IntoPyObjectExt;
    if !sched::exists() {
        return true.into_py_any(py);
    }
    if _must_park(py)? || sched::has_parked(py)? {
        return false.into_py_any(py);
    }
    if sched::has_blocked(py)? {
        return SLICE.into_py_any(py);
    }
    true.into_py_any(py)
}

/// The longest the thread blocks at a time while it has other tasklets.
const SLICE: f64 = 0.05;

/// Waits until `event` is set (True) or `timeout` seconds pass (False),
/// blocking only the running tasklet where another one can run.
#[pyfunction]
#[pyo3(signature = (event, timeout=None))]
pub(crate) fn park(py: Python<'_>, event: Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<bool> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(Duration::try_from_secs_f64(t.max(0.0)).ok()?));
    let rust = event.cast::<PyEvent>().ok().map(|e| e.get().inner());
    loop {
        if event.call_method0("is_set")?.is_truthy()? {
            return Ok(true);
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
        if remaining == Some(0.0) {
            return Ok(false);
        }
        if !_must_park(py)? {
            let others = sched::exists() && (sched::has_blocked(py)? || sched::has_parked(py)?);
            if let (true, Some(inner)) = (others, &rust) {
                // Other tasklets of this thread wait too (on gateways, on
                // channels another thread may send to): this one parks as
                // well, and the thread idles in the scheduler, which wakes
                // for whichever wake-up comes first, not after a slice.
                park_on(py, inner, deadline)?;
                continue;
            }
            // Alone: block the thread as a plain thread does (direct read
            // kept); in slices while other tasklets exist (an event that is
            // not weft's has no wake-up to hook).
            let slice = if others { Some(remaining.map_or(SLICE, |r| r.min(SLICE))) } else { remaining };
            let set = event.call_method1("wait", (slice,))?.is_truthy()?;
            if set || (!others && slice.is_some()) {
                return Ok(set);
            }
            continue;
        }
        match &rust {
            Some(inner) => park_on(py, inner, deadline)?,
            // Not weft's event: no wake-up to hook; give way once and look again.
            None => {
                let (td, me) = sched::current_checked(py)?;
                super::schedule_current(py, td, me, false)?;
            }
        }
    }
}

/// Leaves the run queue until `inner` is set or `deadline` passes: the
/// other tasklets run meanwhile, and with none runnable the scheduler's idle
/// wait takes over the thread.
fn park_on(py: Python<'_>, inner: &std::sync::Arc<crate::event::Inner>, deadline: Option<Instant>) -> PyResult<()> {
    let (td, me) = sched::current_checked(py)?;
    let token = sched::park_current(py, &me, deadline, None)?;
    inner.add_waker(sched::waker(py, &me, token));
    sched::wait_parked(py, td, &me, token, "Deadlock: a tasklet waits on a gateway event nothing can set (no other tasklet can run and no other thread is alive)")
}
