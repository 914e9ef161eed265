//! `weft._weft.Event`: `threading.Event`'s `is_set`/`set`/`clear`/`wait`
//! on a Rust mutex and condition variable, for the channel item queues of
//! `weft._bootstrap.core` (one wake-up per item handed to a waiting thread,
//! without `threading.Condition`'s per-wait lock allocation and Python code).
//! `wait` releases the GIL; in the process's main thread it wakes every
//! 50 ms to run signal handlers, so Ctrl-C still interrupts a blocked
//! `Channel.receive()` as with `threading.Event`.
//!
//! Deferred wake-ups: on a receiver thread (one that calls
//! `FrameReader.read_frames`), `set` marks the event set at once but holds
//! the condition-variable wake-up back until that thread next releases the
//! GIL to read (or ends), so the woken thread finds the GIL free instead of
//! waking a second time for it. Waiters re-check every 50 ms in every
//! thread, so a held-back wake-up can delay a waiter, never strand it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(50);

pub(crate) struct Inner {
    flag: AtomicBool,
    lock: Mutex<bool>,
    cv: Condvar,
    /// Called once when the flag is next set (a parked tasklet's wake-up:
    /// it posts the tasklet to its thread's scheduler, touching no refcount).
    wakers: Mutex<Vec<Waker>>,
}

/// A one-shot wake-up for `Inner::add_waker`.
pub(crate) type Waker = Box<dyn FnOnce() + Send>;

/// A settable flag threads can wait for.
#[pyclass(module = "weft._weft", name = "Event", frozen)]
pub struct PyEvent {
    inner: Arc<Inner>,
}

thread_local! {
    /// Some on a receiver thread: the events set since it last read.
    static DEFERRED: RefCell<Option<Vec<Arc<Inner>>>> = const { RefCell::new(None) };
}

/// Wake-ups held back on this thread; waking them needs no GIL.
#[derive(Default)]
pub(crate) struct Wakeups(Vec<Arc<Inner>>);

impl Wakeups {
    /// Wake every waiter now.
    pub(crate) fn wake(&mut self) {
        for e in self.0.drain(..) {
            e.cv.notify_all();
        }
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.wake();
    }
}

/// Make this thread hold back wake-ups from now on and take those held so
/// far (the caller wakes them, ideally with the GIL released).
pub(crate) fn take_deferred() -> Wakeups {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        Wakeups(std::mem::take(d.get_or_insert_with(Vec::new)))
    })
}

/// This thread stops holding back wake-ups; wake those held.
#[pyfunction]
pub fn flush_wakeups() {
    let mut held = DEFERRED.with(|d| Wakeups(d.borrow_mut().take().unwrap_or_default()));
    held.wake();
}

impl Inner {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Inner {
            flag: AtomicBool::new(false),
            lock: Mutex::new(false),
            cv: Condvar::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Set the flag and wake the waiters (held back on a receiver thread).
    pub(crate) fn set(self: &Arc<Self>) {
        {
            let mut g = self.guard();
            *g = true;
            self.flag.store(true, Ordering::SeqCst);
        }
        let deferred = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(list) => {
                list.push(self.clone());
                true
            }
            None => false,
        });
        if !deferred {
            self.cv.notify_all();
        }
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in wakers {
            w();
        }
    }

    /// Runs `w` when the flag is next set (at once if it is set now). The
    /// flag is read under the flag's lock, which `set` holds while setting
    /// it, and `set` takes the wakers after: a set is never missed.
    pub(crate) fn add_waker(&self, w: Waker) {
        let g = self.guard();
        if *g {
            drop(g);
            w();
            return;
        }
        self.wakers.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }

    pub(crate) fn clear(&self) {
        let mut g = self.guard();
        *g = false;
        self.flag.store(false, Ordering::SeqCst);
    }

    /// Block (GIL released) until set (true) or `timeout` seconds pass
    /// (false); the main thread runs signal handlers every slice.
    pub(crate) fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.is_set() {
            return Ok(true);
        }
        let start = Instant::now();
        // NaN, infinite or absurdly long timeouts wait forever
        let deadline = timeout
            .map(|t| Duration::try_from_secs_f64(t.max(0.0)).ok())
            .and_then(|d| d.and_then(|d| start.checked_add(d)));
        let forever = timeout.is_none() || deadline.is_none();
        let main = in_main_thread();
        loop {
            // every waiter re-checks each slice (a held-back wake-up); the
            // main thread also runs signal handlers between slices
            let slice = Instant::now() + SIGNAL_SLICE;
            let until = Some(if forever {
                slice
            } else {
                deadline.map_or(slice, |d| d.min(slice))
            });
            if py.detach(|| self.wait_until(until)) {
                return Ok(true);
            }
            if let Some(d) = deadline {
                if !forever && Instant::now() >= d {
                    return Ok(false);
                }
            }
            if main {
                py.check_signals()?;
            }
        }
    }

    fn guard(&self) -> MutexGuard<'_, bool> {
        // a panic cannot happen while the lock is held; recover anyway
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait (no GIL) until set or `until`; true if set.
    fn wait_until(&self, until: Option<Instant>) -> bool {
        let mut g = self.guard();
        loop {
            if *g {
                return true;
            }
            match until {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

pub(crate) fn in_main_thread() -> bool {
    // SAFETY: getpid and gettid take no arguments and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

#[pymethods]
impl PyEvent {
    #[new]
    fn new() -> Self {
        PyEvent {
            inner: Inner::new(),
        }
    }

    fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    fn set(&self) {
        self.inner.set();
    }

    fn clear(&self) {
        self.inner.clear();
    }

    /// Block until set (True) or `timeout` seconds pass (False).
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.inner.wait(py, timeout)
    }
}

impl PyEvent {
    /// The shared flag, for a tasklet that parks on it.
    pub(crate) fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// An event sharing `inner` (the wake-up of an item queue).
    pub(crate) fn sharing(inner: Arc<Inner>) -> Self {
        PyEvent { inner }
    }
}

/// Register the event type on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEvent>()?;
    m.add_function(wrap_pyfunction!(flush_wakeups, m)?)
}
