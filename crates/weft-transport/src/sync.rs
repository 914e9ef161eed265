//! The synchronisation primitives and the clock of [`crate::role`] and
//! [`crate::wake`], imported through this one module (as tokio and crossbeam
//! do) so that the same code runs under loom's model checker with
//! `RUSTFLAGS="--cfg loom"`.
//!
//! Under loom the clock stands still ([`now`] is one fixed instant): loom
//! explores interleavings, not time, and a branch on the wall clock would
//! make its runs differ. loom's `Condvar::wait_timeout` never times out, so
//! a model also proves that no thread needs a timeout to make progress.

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

// std's Arc under loom too: `Event::set` takes `self: &Arc<Self>`, which
// loom's Arc cannot be; it is only shared ownership, nothing to interleave.
pub(crate) use std::sync::Arc;

use std::time::Instant;

/// The time now (under loom: always the same instant).
pub(crate) fn now() -> Instant {
    #[cfg(all(test, loom))]
    {
        static FROZEN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *FROZEN.get_or_init(Instant::now)
    }
    #[cfg(not(all(test, loom)))]
    {
        Instant::now()
    }
}

/// Lock `m`, recovering from poisoning (no lock here is held across code
/// that can panic with the state half changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
