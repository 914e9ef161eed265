//! `weft._weft.Event`: `threading.Event`'s `is_set`/`set`/`clear`/`wait`
//! on a Rust mutex and condition variable, for the channel item queues of
//! `weft._bootstrap.core` (one wake-up per item handed to a waiting thread,
//! without `threading.Condition`'s per-wait lock allocation and Python code).
//! `wait` releases the GIL; in the process's main thread it wakes every
//! 50 ms to run signal handlers, so Ctrl-C still interrupts a blocked
//! `Channel.receive()` as with `threading.Event`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// A settable flag threads can wait for.
#[pyclass(module = "weft._weft", name = "Event", frozen)]
pub struct PyEvent {
    flag: AtomicBool,
    lock: Mutex<bool>,
    cv: Condvar,
}

impl PyEvent {
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

fn in_main_thread() -> bool {
    // SAFETY: getpid and gettid take no arguments and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

#[pymethods]
impl PyEvent {
    #[new]
    fn new() -> Self {
        PyEvent {
            flag: AtomicBool::new(false),
            lock: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn set(&self) {
        let mut g = self.guard();
        *g = true;
        self.flag.store(true, Ordering::SeqCst);
        self.cv.notify_all();
    }

    fn clear(&self) {
        let mut g = self.guard();
        *g = false;
        self.flag.store(false, Ordering::SeqCst);
    }

    /// Block until set (True) or `timeout` seconds pass (False).
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.flag.load(Ordering::SeqCst) {
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
            let mut until = if forever { None } else { deadline };
            if main {
                let slice = Instant::now() + SIGNAL_SLICE;
                until = Some(until.map_or(slice, |d| d.min(slice)));
            }
            if py.detach(|| self.wait_until(until)) {
                return Ok(true);
            }
            if let Some(d) = deadline {
                if !forever && Instant::now() >= d {
                    return Ok(false);
                }
            }
            py.check_signals()?;
        }
    }
}

/// Register the event type on the compiled module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEvent>()
}
