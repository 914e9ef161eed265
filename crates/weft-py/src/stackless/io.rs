//! Tasklets waiting for a file descriptor: a gateway send that finds its
//! pipe or socket full, or another tasklet of the same thread in the middle
//! of writing a frame to it. The tasklet parks and the others run; the
//! scheduler looks at the descriptors of its parked writers whenever it
//! picks the next tasklet, and when nothing can run it waits on them itself
//! (with `poll`, the GIL released), together with its mailbox, so a thread
//! whose tasklets all wait on gateways sleeps in one system call and wakes
//! for whichever comes first.
//!
//! Every wait has a deadline of `SIGNAL_SLICE` as well: the writer then
//! looks again (signal handlers, `close()` from another thread), as a thread
//! blocked in a write does.
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use crate::event::{Waker, SIGNAL_SLICE};

use super::sched::{self, Sched, Shared};
use super::tasklet::{Place, Tasklet};

/// A parked tasklet waiting for `events` on `fd`.
pub(crate) struct FdWait {
    fd: RawFd,
    events: i16,
    tasklet: Py<Tasklet>,
    token: u64,
}

/// True if this thread has a scheduler and the running code is its current
/// tasklet (the main tasklet too): its waits on descriptors park it instead
/// of blocking the thread. A greenlet of its own inside a tasklet blocks the
/// thread, as before.
pub(crate) fn can_park(py: Python<'_>) -> bool {
    sched::exists() && sched::running_is_current(py)
}

/// Who writes, as far as a frame writer's turn goes: the running tasklet of
/// this thread (0 without a scheduler: the thread itself).
pub(crate) fn current_key(py: Python<'_>) -> usize {
    if !sched::exists() {
        return 0;
    }
    sched::with(py, |s| s.current.as_ptr() as usize).unwrap_or(0)
}

/// Parks the running tasklet until `fd` is ready for `events` (`POLLOUT`,
/// say) or `SIGNAL_SLICE` passes; the caller then tries again.
pub(crate) fn wait_fd(py: Python<'_>, fd: RawFd, events: i16) -> PyResult<()> {
    wait_fd_until(py, fd, events, Some(Instant::now() + SIGNAL_SLICE))
}

/// Parks the running tasklet until `fd` is ready for `events` or `deadline`
/// passes (None: only the descriptor wakes it; the idle thread's poll
/// still runs signal handlers).
fn wait_fd_until(py: Python<'_>, fd: RawFd, events: i16, deadline: Option<Instant>) -> PyResult<()> {
    let (td, me) = sched::current_plain(py)?;
    let token = sched::park_current(py, &me, deadline, None)?;
    let entry = FdWait { fd, events, tasklet: me.clone_ref(py), token };
    sched::with(py, |s| s.fd_waits.push(entry))?;
    wait_parked(py, td, me, token)
}

/// Parks the running tasklet (`can_park` checked) until `fd` is readable or
/// `deadline` passes. A reader listens for the other end: `run()` does not
/// wait for it (`sched::run_should_wait`) unless asked to block the thread.
pub(crate) fn listen(py: Python<'_>, fd: RawFd, deadline: Option<Instant>) -> PyResult<()> {
    sched::with(py, |s| s.listening += 1)?;
    let r = wait_fd_until(py, fd, libc::POLLIN, deadline);
    sched::with(py, |s| s.listening -= 1)?;
    r
}

/// True if `fd` has data (or an end, or an error) to read now.
pub(crate) fn readable_now(fd: RawFd) -> bool {
    let mut one = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
    // SAFETY: `one` is a valid, exclusively borrowed array of one pollfd for
    // the whole call; timeout 0 returns at once.
    unsafe { libc::poll(one.as_mut_ptr(), 1, 0) > 0 }
}

/// `weft._weft.stackless._wait_fd(fd, writable=False, timeout=None)`: waits
/// until `fd` is readable (or writable), or `timeout` seconds pass; the
/// caller then tries its read or write again. The running tasklet parks
/// and the others run, and an idle thread waits on the descriptor itself
/// (the tasklet exec model's gateway receivers and writers, docs/gateways.md).
/// Without a scheduler (or in a greenlet of its own inside a tasklet) the
/// thread polls, the GIL released, in signal slices.
#[pyfunction]
#[pyo3(signature = (fd, writable=false, timeout=None))]
pub(crate) fn _wait_fd(py: Python<'_>, fd: RawFd, writable: bool, timeout: Option<f64>) -> PyResult<()> {
    if fd < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "_wait_fd: {fd} is not a file descriptor (closed transport?)"
        )));
    }
    let events = if writable { libc::POLLOUT } else { libc::POLLIN };
    let deadline = match timeout {
        Some(t) if t.is_nan() || t < 0.0 => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "_wait_fd: timeout must be a number of seconds >= 0 or None, not {t}"
            )))
        }
        Some(t) => Some(Instant::now() + std::time::Duration::from_secs_f64(t.min(1e9))),
        None => None,
    };
    if can_park(py) {
        if writable {
            return wait_fd_until(py, fd, events, deadline);
        }
        return listen(py, fd, deadline);
    }
    let slice = deadline.map_or(SIGNAL_SLICE, |d| d.saturating_duration_since(Instant::now()).min(SIGNAL_SLICE));
    let mut one = [libc::pollfd { fd, events, revents: 0 }];
    let ms = slice.as_millis().min(i32::MAX as u128) as libc::c_int;
    py.detach(|| {
        // SAFETY: `one` is a valid, exclusively borrowed array of one pollfd
        // for the whole call; the descriptor's validity is the kernel's
        // to check (a bad one is reported in `revents`, not followed).
        unsafe { libc::poll(one.as_mut_ptr(), 1, ms) };
    });
    py.check_signals()
}

/// Parks the running tasklet until the waker handed to `register` runs or
/// `SIGNAL_SLICE` passes.
pub(crate) fn wait_woken(py: Python<'_>, register: impl FnOnce(Waker)) -> PyResult<()> {
    let (td, me) = sched::current_plain(py)?;
    let token = sched::park_current(py, &me, Some(Instant::now() + SIGNAL_SLICE), None)?;
    register(sched::waker(py, &me, token));
    wait_parked(py, td, me, token)
}

/// The parked tasklet `me` gives way until its descriptor, its waker or its
/// deadline (always set) makes it runnable again.
fn wait_parked(py: Python<'_>, td: *mut crate::greenlet::ThreadData, me: Py<Tasklet>, token: u64) -> PyResult<()> {
    sched::wait_parked(py, td, &me, token, "Deadlock: a tasklet waits for a descriptor nothing can make ready")
}

/// Makes the descriptor waiters whose descriptor is ready runnable, and
/// drops the entries of those that were woken some other way; looks without
/// waiting (the scheduler does this at every pick while anyone waits).
pub(crate) fn poll_ready(s: &mut Sched) {
    if s.fd_waits.is_empty() {
        return;
    }
    drop_stale(s);
    let mut fds = pollfds(s);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()`
    // pollfd structures for the whole call; timeout 0 returns at once.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if n > 0 {
        take_ready(s, &fds);
    }
}

/// Entries of tasklets no longer parked with their token (woken by their
/// deadline, thrown into, killed) are dropped.
fn drop_stale(s: &mut Sched) {
    let (live, stale): (Vec<FdWait>, Vec<FdWait>) =
        std::mem::take(&mut s.fd_waits).into_iter().partition(|w| w.tasklet.get().place() == Place::Parked(w.token));
    s.fd_waits = live;
    s.stale.extend(stale.into_iter().map(|w| w.tasklet));
}

/// Links the waiters whose entry in `fds` (same order as `s.fd_waits`) is
/// ready back into the ring.
fn take_ready(s: &mut Sched, fds: &[libc::pollfd]) {
    debug_assert_eq!(fds.len(), s.fd_waits.len());
    let waits = std::mem::take(&mut s.fd_waits);
    for (i, w) in waits.into_iter().enumerate() {
        if fds.get(i).is_some_and(|p| p.revents != 0) {
            sched::insert_back(s, w.tasklet);
        } else {
            s.fd_waits.push(w);
        }
    }
}

/// The descriptors the idle thread waits on, or None if no tasklet waits on
/// one (it then waits on its mailbox alone).
pub(crate) fn idle_fds(s: &mut Sched) -> Option<Vec<libc::pollfd>> {
    if s.fd_waits.is_empty() {
        return None;
    }
    drop_stale(s);
    if s.fd_waits.is_empty() {
        return None;
    }
    Some(pollfds(s))
}

/// One `pollfd` per descriptor waiter, in `s.fd_waits`'s order.
fn pollfds(s: &Sched) -> Vec<libc::pollfd> {
    s.fd_waits.iter().map(|w| libc::pollfd { fd: w.fd, events: w.events, revents: 0 }).collect()
}

/// The idle thread waits, the GIL released, until one of `fds` is ready,
/// mail arrives (the mailbox's wake-up descriptor) or `slice` seconds pass.
pub(crate) fn idle_poll(py: Python<'_>, shared: &Arc<Shared>, mut fds: Vec<libc::pollfd>, slice: f64) -> PyResult<()> {
    let wake = shared.poll_wake_fd()?;
    fds.push(libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 });
    shared.set_polling(true);
    // Mail posted before `polling` was set did not write the descriptor:
    // looked at here, after setting it (the poster looks at `polling`
    // after posting).
    if !shared.has_mail() {
        let ms = (slice * 1000.0).ceil().clamp(0.0, i32::MAX as f64) as libc::c_int;
        py.detach(|| {
            // SAFETY: `fds` is a valid, exclusively borrowed array of
            // `fds.len()` pollfd structures for the whole call.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        });
    }
    shared.set_polling(false);
    shared.drain_poll_wake();
    sched::with(py, |s| {
        if fds.len() > 1 {
            // `s.fd_waits` may have changed meanwhile only by this thread,
            // which was here: the order still matches.
            take_ready(s, &fds[..fds.len() - 1]);
        }
    })?;
    py.check_signals()
}
