//! The primitives of [`crate::KillQueue`], from loom under `--cfg loom`
//! (as tokio and crossbeam import theirs), so that the same code is the
//! model.
#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard};
