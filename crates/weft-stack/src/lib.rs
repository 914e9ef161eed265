//! Stack slicing: many coroutines share one thread's C stack.
//!
//! A coroutine that is switched away from keeps, on the heap, only the part of
//! the C stack it used and that the next coroutine is about to overwrite; the
//! rest stays in place until someone needs the room. Switching back copies the
//! heap slice to the very same addresses, so pointers into the stack stay valid
//! and the interpreter's stack-depth checks, which compare stack pointers, keep
//! working. This is the technique of Stackless Python and greenlet; weft's
//! version is this file plus one assembly routine per target in [`arch`].
//!
//! What this crate owns: the bookkeeping of which coroutine's bytes are where,
//! and the switch itself. What it must not do: know anything about Python.
//!
//! # Invariants (the `SAFETY` notes below point at these)
//! * **S1** all [`Slice`]s taking part in a switch belong to the current thread
//!   and stay at fixed addresses while any of them is on the stack chain.
//! * **S2** the chain: `prev` links the running slice to the slices that still
//!   have bytes on the C stack, by increasing `stop`; a slice whose `start` is
//!   null is dead (or dying) and is skipped.
//! * **S3** a slice's bytes live at `[start, stop)`: `saved` bytes from `start`
//!   upwards are in `copy`, the rest are still on the C stack.
//! * **S4** no Rust frame that outlives a switch sits between a coroutine's
//!   `stop` and the switch point except frames of that same coroutine.

use core::ffi::c_void;
use core::ptr;

pub mod arch;

/// Stack bookkeeping of one coroutine.
pub struct Slice {
    start: *mut u8,
    stop: *mut u8,
    copy: Vec<u8>,
    saved: usize,
    prev: *mut Slice,
    /// While a switch to this slice runs: the slice it comes from. The arch
    /// routine's callbacks read it; it cannot live on either stack, which
    /// the switch rewrites, and here it costs no thread-local look-up.
    from: *mut Slice,
}

/// Marks a slice that runs but has not switched away yet (it has no real `start`).
const RUNNING_MARK: *mut u8 = std::ptr::dangling_mut::<u8>();

impl Default for Slice {
    fn default() -> Self {
        Self::new()
    }
}

impl Slice {
    /// A coroutine that has not started.
    pub const fn new() -> Self {
        Slice { start: ptr::null_mut(), stop: ptr::null_mut(), copy: Vec::new(), saved: 0, prev: ptr::null_mut(), from: ptr::null_mut() }
    }

    /// The slice of a thread's original stack: it owns everything above `start`.
    pub const fn new_main() -> Self {
        Slice { start: RUNNING_MARK, stop: usize::MAX as *mut u8, copy: Vec::new(), saved: 0, prev: ptr::null_mut(), from: ptr::null_mut() }
    }

    /// True while the coroutine has bytes to run on (started and not finished).
    pub fn is_active(&self) -> bool {
        !self.start.is_null()
    }

    /// True once [`Slice::begin`] ran.
    pub fn is_started(&self) -> bool {
        !self.stop.is_null()
    }

    /// Bytes of C stack held on the heap for this coroutine.
    pub fn heap_bytes(&self) -> usize {
        self.copy.capacity()
    }

    /// Bytes this suspended coroutine has saved to the heap.
    pub fn saved_bytes(&self) -> usize {
        self.saved
    }

    /// Prepares a coroutine that is about to start. `stop` is an address in the
    /// frame of the function that starts it: everything below belongs to the new
    /// coroutine. `current` is the slice running now.
    ///
    /// # Safety
    /// `current` must be the running slice of this thread (S1, S2).
    pub unsafe fn begin(&mut self, stop: *mut u8, current: *mut Slice) {
        self.start = ptr::null_mut();
        self.stop = stop;
        self.saved = 0;
        // SAFETY: S1: `current` is this thread's running slice.
        let cur = unsafe { &*current };
        self.prev = if cur.is_active() { current } else { cur.prev };
    }

    /// Called by a new coroutine once it runs on its own.
    pub fn mark_running(&mut self) {
        self.start = RUNNING_MARK;
    }

    /// Marks the coroutine finished: its bytes are never needed again.
    pub fn mark_dead(&mut self) {
        self.start = ptr::null_mut();
        self.saved = 0;
        self.copy = Vec::new();
    }

    /// Forgets a suspended coroutine that can never run again (its thread died).
    pub fn abandon(&mut self) {
        self.mark_dead();
        self.stop = ptr::null_mut();
    }

    /// Takes `gone`, a suspended slice that will never run again, out of the
    /// chain that starts at `running` (S2), so no later switch follows a
    /// pointer to it.
    ///
    /// # Safety
    /// `running` is this thread's running slice; both are of this thread (S1).
    pub unsafe fn unlink(running: *mut Slice, gone: *mut Slice) {
        let mut s = running;
        // SAFETY: S1/S2: the chain holds this thread's live slices.
        unsafe {
            while !s.is_null() {
                if (*s).prev == gone {
                    (*s).prev = (*gone).prev;
                }
                s = (*s).prev;
            }
        }
    }

    /// Ensures the bytes in `[start, upto)` are saved on the heap (S3).
    fn save_up_to(&mut self, upto: *mut u8) {
        let want = (upto as usize).saturating_sub(self.start as usize);
        if want > self.saved {
            if self.copy.len() < want {
                self.copy.resize(want, 0);
            }
            // SAFETY: S3: `[start + saved, start + want)` is live C stack of this
            // coroutine, not yet saved, and below the target's `stop`.
            unsafe {
                ptr::copy_nonoverlapping(self.start.add(self.saved), self.copy.as_mut_ptr().add(self.saved), want - self.saved);
            }
            self.saved = want;
        }
    }

    /// Reads `len` bytes at `addr` as this suspended coroutine sees them: from the
    /// heap copy where they were saved, from the C stack otherwise.
    ///
    /// # Safety
    /// `addr..addr+len` must lie inside memory this coroutine could read when it
    /// ran (its stack slice or heap memory), and `dst` must hold `len` bytes.
    pub unsafe fn read_as_seen(&self, dst: *mut u8, addr: *const u8, len: usize) {
        let a = addr as usize;
        let (s, saved_end) = (self.start as usize, self.start as usize + self.saved);
        for i in 0..len {
            let p = a + i;
            let byte = if self.saved > 0 && p >= s && p < saved_end {
                self.copy[p - s]
            } else {
                // SAFETY: the caller promises the address is readable.
                unsafe { *(p as *const u8) }
            };
            // SAFETY: `dst` holds `len` bytes.
            unsafe { *dst.add(i) = byte };
        }
    }
}

/// What a switch found on the other side.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// We are back in a coroutine that had switched away earlier.
    Resumed,
    /// We are now the target, which had never run: the caller must start it
    /// and must never return from the frame that called [`switch`].
    Started,
}

/// The two slices of the switch running now, as the callbacks find them:
/// `ctx` is the target slice, whose `from` `switch` set.
struct InFlight {
    current: *mut Slice,
    target: *mut Slice,
}

/// # Safety
/// `ctx` is the target slice of the switch in progress on this thread.
unsafe fn in_flight(ctx: *mut c_void) -> InFlight {
    let target = ctx as *mut Slice;
    // SAFETY: the caller's contract: a live slice, whose `from` was set by
    // `switch` for this very switch.
    InFlight { current: unsafe { (*target).from }, target }
}

// Test-only: called at the start of every `save_current`, i.e. inside the
// arch routine's frame (the backtrace test looks through it from here).
#[cfg(test)]
thread_local! {
    static SAVE_HOOK: core::cell::Cell<Option<fn()>> = const { core::cell::Cell::new(None) };
}

unsafe extern "C" fn save_current(sp: *mut u8, ctx: *mut c_void) -> *mut u8 {
    // Both arch routines keep the ABI's 16-byte stack alignment; a target
    // resumes with exactly this stack pointer.
    debug_assert_eq!(sp as usize % 16, 0, "weft_stack_switch misaligned the stack");
    #[cfg(test)]
    if let Some(hook) = SAVE_HOOK.with(|h| h.get()) {
        hook();
    }
    // SAFETY: `ctx` is the target slice of this switch (see `switch`, S1).
    let f = unsafe { in_flight(ctx) };
    // SAFETY: S1/S2: both slices belong to this thread and are fixed.
    unsafe {
        let target_stop = (*f.target).stop;
        let mut owner = f.current;
        if (*owner).start.is_null() {
            owner = (*owner).prev; // dying: nothing of it is worth keeping
        } else {
            (*owner).start = sp;
        }
        while (*owner).stop < target_stop {
            // `owner` lies entirely inside the area the target will use.
            let stop = (*owner).stop;
            (*owner).save_up_to(stop);
            owner = (*owner).prev;
        }
        if owner != f.target {
            (*owner).save_up_to(target_stop);
        }
        let start = (*f.target).start;
        if start.is_null() { ptr::null_mut() } else { start }
    }
}

unsafe extern "C" fn restore_target(ctx: *mut c_void) {
    // SAFETY: as in `save_current`; we now run below the target's `start`, so
    // writing `[start, start + saved)` does not touch our own frame.
    unsafe {
        let f = in_flight(ctx);
        let t = &mut *f.target;
        if t.saved > 0 {
            ptr::copy_nonoverlapping(t.copy.as_ptr(), t.start, t.saved);
            t.saved = 0;
            // Keep the buffer for the next switch unless it is much larger than
            // this coroutine usually needs.
            if t.copy.capacity() > 64 * 1024 {
                t.copy = Vec::new();
            }
        }
        let mut owner = f.current;
        if (*owner).start.is_null() {
            owner = (*owner).prev;
        }
        while !owner.is_null() && (*owner).stop <= t.stop {
            owner = (*owner).prev;
        }
        t.prev = owner;
    }
}

/// Switches the C stack from `current` to `target`.
///
/// # Safety
/// Both slices belong to this thread (S1); `current` is the running one; if
/// `target` has not started, [`Slice::begin`] was called on it from a frame that
/// stays alive on this stack (S4). The caller must not keep references into
/// its own stack that another coroutine could invalidate.
///
/// Inlined into the caller: the arch routine saves every callee-saved
/// register itself, so this frame would only add a call, and 16 bytes to
/// every suspended coroutine's stack.
#[inline]
pub unsafe fn switch(current: *mut Slice, target: *mut Slice) -> Arrival {
    // SAFETY: `target` is a live slice of this thread (S1); only this
    // switch reads its `from`, through the callbacks below.
    unsafe { (*target).from = current };
    let ctx = target;
    // SAFETY: the contract above; the asm routine preserves the ABI's
    // callee-saved state across the switch.
    let r = unsafe { arch::weft_stack_switch(save_current, restore_target, ctx as *mut c_void) };
    if r == 1 { Arrival::Started } else { Arrival::Resumed }
}

#[cfg(test)]
mod tests;
