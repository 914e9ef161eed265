//! `weft-killq`: the queue through which other threads hand a thread work
//! that only it can do, closed when that thread exits.
//!
//! **Owns**: the protocol between three parties, each on its own thread:
//! a thread `B` that drops the last reference to a suspended greenlet of
//! thread `A` queues its kill ([`KillQueue::push`]); `A` kills what is
//! queued at its next switch ([`KillQueue::take`], one atomic load when
//! nothing is queued); `A`'s exit closes the queue ([`KillQueue::close`])
//! and gets what is still queued, to release elsewhere.
//!
//! **Must not**: know what it queues (weft-py queues `Py<Greenlet>`), or
//! drop an item itself: items may need the GIL to drop, so every item
//! comes back to a caller, who drops it where that is allowed.
//!
//! Invariants (checked under every interleaving by the loom models in
//! `loom_tests`, `RUSTFLAGS="--cfg loom" cargo test -p weft-killq --release
//! loom`):
//! 1. Every pushed item comes back exactly once: from [`KillQueue::take`],
//!    from [`KillQueue::close`], or refused by [`KillQueue::push`] because
//!    the thread has exited. None is stranded in a closed queue.
//!    (`alive` is read again under the queue's lock, which `close` holds
//!    while it clears `alive` and empties the queue.)
//! 2. An item pushed before a `take` starts (happens-before) is returned by
//!    that `take` or an earlier one: the `pending` flag is raised under the
//!    lock after the push, and cleared under the lock before the take.

#![warn(missing_docs)]

mod sync;

use sync::{AtomicBool, Mutex, MutexGuard, Ordering};

/// The kill queue of one thread (in weft-py's `ThreadRecord`).
#[derive(Debug)]
pub struct KillQueue<T> {
    /// False once the thread has exited.
    alive: AtomicBool,
    items: Mutex<Vec<T>>,
    /// Raised whenever `items` may be non-empty, so that `take` on the
    /// switch path reads one flag instead of taking the lock.
    pending: AtomicBool,
}

impl<T> Default for KillQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> KillQueue<T> {
    /// The open, empty queue of a live thread.
    pub fn new() -> Self {
        KillQueue { alive: AtomicBool::new(true), items: Mutex::new(Vec::new()), pending: AtomicBool::new(false) }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // nothing panics while the lock is held; recover from poisoning anyway
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the thread is still alive (an unlocked look: it may exit
    /// right after; [`KillQueue::push`] looks again under the lock).
    #[inline]
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Another thread: queue `item` for the owning thread. `Err(item)` if
    /// that thread has exited (the caller disposes of it otherwise).
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut q = self.lock();
        if !self.alive.load(Ordering::Acquire) {
            return Err(item);
        }
        q.push(item);
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether something may be queued: one atomic load, for the owner's
    /// switch path to skip [`KillQueue::take`] when nothing is.
    #[inline]
    pub fn may_have_items(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The owning thread: everything queued so far (empty, without taking
    /// the lock, if nothing was).
    pub fn take(&self) -> Vec<T> {
        if !self.may_have_items() {
            return Vec::new();
        }
        let mut q = self.lock();
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    }

    /// The owning thread's exit: no more pushes; what is still queued.
    pub fn close(&self) -> Vec<T> {
        let mut q = self.lock();
        self.alive.store(false, Ordering::Release);
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    }

    /// How many items are queued now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if none are queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pushed_items_are_taken_in_order_once() {
        let q = KillQueue::new();
        assert!(q.take().is_empty());
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.take(), vec![1, 2]);
        assert!(q.take().is_empty());
        assert!(q.is_alive());
    }

    #[test]
    fn a_closed_queue_refuses_pushes_and_hands_back_what_it_held() {
        let q = KillQueue::new();
        q.push("a").unwrap();
        assert_eq!(q.close(), vec!["a"]);
        assert!(!q.is_alive());
        assert_eq!(q.push("b"), Err("b"));
        assert!(q.take().is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn racing_pushes_and_an_exit_lose_nothing() {
        // many threads push while the owner takes and then exits: every item
        // comes back exactly once
        for _ in 0..50 {
            let q = Arc::new(KillQueue::new());
            let pushers: Vec<_> = (0..4)
                .map(|t| {
                    let q = q.clone();
                    std::thread::spawn(move || (0..100).filter_map(|i| q.push(t * 1000 + i).err()).collect::<Vec<_>>())
                })
                .collect();
            let mut seen = q.take();
            seen.extend(q.take());
            seen.extend(q.close());
            for p in pushers {
                seen.extend(p.join().unwrap());
            }
            seen.sort();
            let want: Vec<_> = (0..4).flat_map(|t| (0..100).map(move |i| t * 1000 + i)).collect();
            assert_eq!(seen, want);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
