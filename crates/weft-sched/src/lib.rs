//! `weft-sched`: the bookkeeping of a tasklet scheduler, without Python.
//!
//! **Owns**: [`Ring`], the circular doubly linked list that Stackless calls
//! the chain of runnable tasklets (its head is the running tasklet; `next`
//! and `prev` are the links a tasklet reports), also used, as a plain FIFO,
//! for the tasklets waiting on a channel; and [`chan`], the rules of a
//! channel hand-off: who is waiting, the balance, and which side runs after
//! the hand-off (preference, `schedule_all`, cross-thread partners).
//!
//! **Must not**: know about Python objects, stacks or threads. The caller
//! (weft-py's `stackless` module) stores a handle of its own in each node and
//! does the switching; everything here is safe Rust and cargo-tested.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod chan;
mod ring;

pub use ring::{Key, Ring};
