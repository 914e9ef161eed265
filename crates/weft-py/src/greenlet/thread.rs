//! Per-OS-thread coroutine bookkeeping: the main greenlet, the running one,
//! and the values in flight during a switch (they cannot live on a stack that
//! is being swapped out).
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use weft_killq::KillQueue;

use super::Greenlet;

/// Shared between a thread and every greenlet created in it; outlives the thread.
pub struct ThreadRecord {
    /// Suspended greenlets whose last reference was dropped by another thread:
    /// killed by their own thread at its next switch. Closed (the thread is
    /// no longer alive) when the thread exits; the protocol and its loom
    /// models are crate `weft-killq`'s.
    pub kills: KillQueue<Py<Greenlet>>,
    /// The greenlet object running in that thread (for checks from others).
    pub current: AtomicPtr<pyo3::ffi::PyObject>,
}

impl ThreadRecord {
    /// Whether the thread still runs (it may exit right after this look;
    /// `kills.push` looks again under the queue's lock).
    pub fn alive(&self) -> bool {
        self.kills.is_alive()
    }

    /// True if `obj` is the greenlet running in that thread (for an exited
    /// thread: the one that was running when it exited, which has no saved
    /// state).
    pub fn is_running(&self, obj: *const pyo3::ffi::PyObject) -> bool {
        std::ptr::eq(self.current.load(Ordering::Acquire), obj)
    }
}

/// What a switch carries to the coroutine it resumes.
pub enum Passing {
    Args(Py<PyTuple>, Option<Py<PyDict>>),
    Raise(PyErr),
    /// Nothing: the switch itself is the message (a tasklet resumed by its
    /// scheduler finds what it was sent in its own state). Delivered as None.
    Empty,
}

pub struct ThreadData {
    pub record: Arc<ThreadRecord>,
    pub main: Py<Greenlet>,
    pub current: Py<Greenlet>,
    pub passing: Option<Passing>,
    /// The greenlet object a switch in progress goes to (borrowed).
    pub switching_to: *mut pyo3::ffi::PyObject,
    /// The greenlet a switch came from, released once the target runs.
    pub switching_from: Option<Py<Greenlet>>,
    /// The callable a starting greenlet will run.
    pub starting_run: Option<Py<PyAny>>,
    pub trace: Option<Py<PyAny>>,
}

/// References a dead thread left behind: released by the next thread that holds
/// the GIL and enters weft (a thread's TLS destructor may run without it).
static ORPHANS: Mutex<Vec<Py<PyAny>>> = Mutex::new(Vec::new());
/// Set when ORPHANS has something: one relaxed load on weft's entry paths.
static HAVE_ORPHANS: AtomicBool = AtomicBool::new(false);
pub static LIVE_MAIN_GREENLETS: AtomicUsize = AtomicUsize::new(0);

struct Slot(UnsafeCell<Option<ThreadData>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(td) = self.0.get_mut().take() {
            // Another thread queueing a kill either finds the queue closed
            // or has its kill handed on below (weft-killq).
            let pending: Vec<Py<Greenlet>> = td.record.kills.close();
            LIVE_MAIN_GREENLETS.fetch_sub(1, Ordering::Relaxed);
            let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
            orphans.push(td.main.into_any());
            orphans.push(td.current.into_any());
            orphans.extend(td.trace);
            orphans.extend(td.switching_from.map(|g| g.into_any()));
            orphans.extend(td.starting_run);
            orphans.extend(pending.into_iter().map(|g| g.into_any()));
            HAVE_ORPHANS.store(true, Ordering::Release);
        }
    }
}

thread_local! {
    static SLOT: Slot = const { Slot(UnsafeCell::new(None)) };
}

/// Releases what dead threads left behind. Needs the GIL.
pub fn release_orphans(_py: Python<'_>) {
    if !HAVE_ORPHANS.swap(false, Ordering::AcqRel) {
        return;
    }
    let taken: Vec<Py<PyAny>> = {
        let mut o = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
        if o.is_empty() {
            return;
        }
        std::mem::take(&mut *o)
    };
    drop(taken);
}

/// This thread's data, created with its main greenlet on first use. The
/// pointer stays valid until the thread exits; the GIL serialises all access.
pub fn thread_data(py: Python<'_>) -> PyResult<*mut ThreadData> {
    let p = SLOT.try_with(|s| s.0.get()).map_err(|_| super::error_new("weft: thread is exiting"))?;
    // SAFETY: this thread's own slot; the GIL is held and nobody else reaches it.
    unsafe {
        if let Some(td) = (*p).as_mut() {
            if HAVE_ORPHANS.load(Ordering::Relaxed) {
                release_orphans(py);
            }
            return Ok(td as *mut ThreadData);
        }
        release_orphans(py);
        let record = Arc::new(ThreadRecord {
            kills: KillQueue::new(),
            current: AtomicPtr::new(ptr::null_mut()),
        });
        let main = Greenlet::new_main(py, record.clone())?;
        record.current.store(main.as_ptr(), Ordering::Release);
        LIVE_MAIN_GREENLETS.fetch_add(1, Ordering::Relaxed);
        *p = Some(ThreadData {
            record,
            current: main.clone_ref(py),
            main,
            passing: None,
            switching_to: ptr::null_mut(),
            switching_from: None,
            starting_run: None,
            trace: None,
        });
        Ok((*p).as_mut().unwrap() as *mut ThreadData)
    }
}

/// This thread's data if it exists already.
pub fn thread_data_if_any() -> Option<*mut ThreadData> {
    // SAFETY: as in `thread_data`.
    SLOT.try_with(|s| unsafe { (*s.0.get()).as_mut().map(|t| t as *mut ThreadData) }).ok().flatten()
}
