//! A settable flag threads wait for ([`Event`]: `threading.Event` on a Rust
//! mutex and condition variable), and deferred wake-ups: the wake-up half
//! of the direct-read protocol (docs/gateways.md).
//!
//! Deferred wake-ups: on a thread that has called [`take_deferred`] (a
//! gateway's receiver thread), [`Event::set`] marks the event set at once
//! but holds the condition-variable wake-up back until that thread next
//! calls [`take_deferred`] and wakes what it returns (just before it blocks
//! to read, with the GIL released), or [`stop_deferring`]; dropping the
//! returned [`Wakeups`] wakes them too. The woken thread then finds the GIL
//! free instead of waking a second time for it.
//!
//! Invariants (loom models in `loom_tests`): a waiter that blocks in
//! [`Event::wait_until`] while the flag is clear is woken by the `set` that
//! sets it, at once or when the setter's held wake-ups are woken; a set
//! never goes unseen by [`Event::add_waker`] (each waker runs exactly once).
//! Python's waits also re-check every 50 ms, but nothing relies on that.

use std::cell::RefCell;
use std::time::Instant;

use crate::sync::{fence, lock, now, Arc, AtomicBool, Condvar, Mutex, MutexGuard, Ordering};

/// A one-shot wake-up for [`Event::add_waker`].
pub type Waker = Box<dyn FnOnce() + Send>;

/// A settable flag threads can wait for.
pub struct Event {
    flag: AtomicBool,
    lock: Mutex<bool>,
    cv: Condvar,
    /// Called once when the flag is next set (a parked tasklet's wake-up:
    /// it posts the tasklet to its thread's scheduler, touching no refcount).
    wakers: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

#[cfg(not(all(test, loom)))]
thread_local! {
    /// Some on a thread that defers: the events set since it last woke them.
    static DEFERRED: RefCell<Option<Vec<Arc<Event>>>> = const { RefCell::new(None) };
}
#[cfg(all(test, loom))]
loom::thread_local! {
    static DEFERRED: RefCell<Option<Vec<Arc<Event>>>> = RefCell::new(None);
}

/// Wake-ups held back on this thread; waking them takes no lock but the
/// condition variables' own (no GIL).
#[derive(Default)]
pub struct Wakeups(Vec<Arc<Event>>);

impl Wakeups {
    /// Wake every waiter now.
    pub fn wake(&mut self) {
        for e in self.0.drain(..) {
            e.notify();
        }
    }

    /// How many events' wake-ups are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if none are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.wake();
    }
}

/// Make this thread hold back wake-ups from now on and take those held so
/// far (the caller wakes them, ideally with the GIL released).
pub fn take_deferred() -> Wakeups {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        Wakeups(std::mem::take(d.get_or_insert_with(Vec::new)))
    })
}

/// This thread stops holding back wake-ups; returns those held.
pub fn stop_deferring() -> Wakeups {
    DEFERRED.with(|d| Wakeups(d.borrow_mut().take().unwrap_or_default()))
}

impl Event {
    /// A clear event.
    pub fn new() -> Arc<Self> {
        Arc::new(Event {
            flag: AtomicBool::new(false),
            lock: Mutex::new(false),
            cv: Condvar::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// Whether the flag is set (no lock).
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn notify(&self) {
        // No lock needed: a waiter looks at the flag and starts waiting
        // under the lock that `set` took to set it, so it is either past
        // its look (it sees the flag) or already waiting (it is woken).
        self.cv.notify_all();
    }

    /// Set the flag and wake the waiters (held back on a deferring thread).
    pub fn set(self: &Arc<Self>) {
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
            self.notify();
        }
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w();
        }
    }

    /// Runs `w` when the flag is next set (at once if it is set now). The
    /// flag is read under the flag's lock, which `set` holds while setting
    /// it, and `set` takes the wakers after: a set is never missed.
    pub fn add_waker(&self, w: Waker) {
        let g = self.guard();
        if *g {
            drop(g);
            w();
            return;
        }
        lock(&self.wakers).push(w);
    }

    /// Clear the flag.
    pub fn clear(&self) {
        let mut g = self.guard();
        *g = false;
        self.flag.store(false, Ordering::SeqCst);
    }

    fn guard(&self) -> MutexGuard<'_, bool> {
        lock(&self.lock)
    }

    /// Block until set or `until` (None: no limit); true if set.
    pub fn wait_until(&self, until: Option<Instant>) -> bool {
        let mut g = self.guard();
        loop {
            if *g {
                return true;
            }
            match until {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let t = now();
                    if t >= d {
                        return false;
                    }
                    g = self.cv.wait_timeout(g, d - t).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }
}

/// Whether a thread is blocked reading for a queue itself (direct read,
/// [`crate::direct`]): a put into that queue must then poke the role's
/// holder out of its poll, since the queue's [`Event`] does not reach it.
///
/// The waiter raises the flag and then looks at the event; the putter sets
/// the event and then looks at the flag. A `SeqCst` fence between the
/// store and the load on both sides makes at least one of them see the
/// other (the store-buffer pattern), so a put is never missed by both.
/// (`SeqCst` stores and loads alone would do in the C11 model too; the
/// fences are what loom can check: it treats `SeqCst` accesses as
/// `AcqRel`. On x86-64 the `SeqCst` store is a full barrier already.)
#[derive(Debug, Default)]
pub struct WaiterFlag(AtomicBool);

impl WaiterFlag {
    /// No thread is blocked.
    pub fn new() -> Self {
        WaiterFlag(AtomicBool::new(false))
    }

    /// Waiting thread: it is about to block for `ready`. False (flag down
    /// again) if `ready` is set already: then it must not block.
    pub fn announce(&self, ready: &Event) -> bool {
        self.raise();
        if ready.is_set() {
            self.lower();
            return false;
        }
        true
    }

    /// Waiting thread: it blocks next, in a wait that itself looks at the
    /// event (under the role's lock: [`crate::role::Role::user_acquire`]).
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Waiting thread: it no longer blocks.
    pub fn lower(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Putter, after setting the event: whether to poke the role's holder.
    pub fn must_poke(&self) -> bool {
        fence(Ordering::SeqCst);
        self.0.load(Ordering::SeqCst)
    }
}
