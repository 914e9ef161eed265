//! A coroutine's share of the CPython thread state.
//!
//! What this crate owns: the opaque [`Blob`] that holds a suspended coroutine's
//! interpreter state (frame chain, exception state, contextvars context, data
//! stack, recursion depth, trashcan), and the calls that move it in and out of
//! the running thread state. Every private CPython field is touched in
//! `csrc/pystate.c` and nowhere else; this file only declares what that file
//! exports. What it must not do: switch stacks, or decide when to switch.
//!
//! All functions require the GIL (the thread state passed is the caller's own).
//!
//! The `SAFETY` notes below rest on two facts:
//! * **P1** every `*mut Blob` handed to C is `&mut self`, or a `this`
//!   pointer the caller vouches for the same way: valid, 8-aligned,
//!   `BLOB_BYTES` long and not aliased by a Rust reference for the call;
//!   pystate.c's
//!   `_Static_assert`s prove its `weft_pystate` fits in that many bytes and
//!   needs no more alignment, and `layout_ok` (checked at import) that both
//!   sides agree on the size, so the C side never reads or writes outside it.
//! * **P2** the GIL serialises every access to interpreter state, and each
//!   function's `# Safety` contract is exactly what its C function assumes
//!   (named in csrc/pystate.c): given that contract, the C code touches only
//!   the thread state it is passed and the blob.
//!
//! The calls that may run Python code (a release that runs a `__del__`) or
//! that do not return while the coroutine lives (`run_new`) take a raw
//! `this: *mut Blob`, not `&mut self`: that code may reach the same
//! coroutine again and touch its blob, which a `&mut` live across the call
//! would alias. Those taking `&mut self` run no Python code.
use core::ffi::{c_int, c_ulong, c_void};

use pyo3::Python;

/// Opaque CPython thread state (`PyThreadState *`).
pub type ThreadState = c_void;
/// Opaque `PyObject`.
pub type Object = c_void;

/// Bytes reserved for one coroutine's state; pystate.c asserts it fits.
pub const BLOB_BYTES: usize = 160;

/// A coroutine's saved interpreter state. Owns strong references while it holds
/// state (context, handled exception); [`Blob::clear`] drops them.
#[repr(C, align(8))]
pub struct Blob([u8; BLOB_BYTES]);

impl Default for Blob {
    fn default() -> Self {
        Blob([0; BLOB_BYTES])
    }
}

/// `visitproc` of the garbage collector.
pub type Visit = unsafe extern "C" fn(obj: *mut Object, arg: *mut c_void) -> c_int;

unsafe extern "C-unwind" {
    fn weft_pystate_bytes() -> usize;
    fn weft_pystate_built_for() -> c_ulong;
    fn weft_pystate_built_with_jit() -> c_int;
    fn weft_is_finalizing() -> c_int;
    fn weft_set_refcnt(o: *mut Object, n: isize);
    fn weft_pystate_save(s: *mut Blob, to: *mut Blob);
    fn weft_pystate_hand_over(s: *mut Blob, to: *mut Blob);
    fn weft_pystate_restore(s: *mut Blob);
    fn weft_pystate_traverse(s: *mut Blob, visit: Visit, arg: *mut c_void) -> c_int;
    fn weft_pystate_clear(s: *mut Blob);
    fn weft_pystate_traverse_frames(s: *mut Blob, visit: Visit, arg: *mut c_void) -> c_int;
    fn weft_pystate_frames_traversable() -> c_int;
    fn weft_pystate_context(s: *mut Blob) -> *mut Object;
    fn weft_pystate_ref(s: *mut Blob, i: c_int) -> *mut Object;
    fn weft_pystate_set_context(s: *mut Blob, ctx: *mut Object);
    fn weft_thread_context(ts: *mut ThreadState) -> *mut Object;
    fn weft_thread_set_context(ts: *mut ThreadState, ctx: *mut Object);
    fn weft_set_root_chunk_bytes(n: usize);
    fn weft_pystate_run_new(ts: *mut ThreadState, s: *mut Blob, with_chunk: c_int, body: unsafe extern "C-unwind" fn(*mut c_void), arg: *mut c_void) -> c_int;
    fn weft_pystate_finish(ts: *mut ThreadState, s: *mut Blob);
    fn weft_pystate_top_frame(ts: *mut ThreadState, s: *mut Blob) -> *mut Object;
    fn weft_pystate_release_orphaned(s: *mut Blob) -> c_int;
}

/// `PY_VERSION_HEX` of the headers the C file was compiled against.
pub fn built_for() -> u32 {
    // SAFETY: a pure function of the build.
    unsafe { weft_pystate_built_for() as u32 }
}

/// True if the C file was compiled for an interpreter built with the JIT
/// (its thread state then has the JIT's fields).
pub fn built_with_jit() -> bool {
    // SAFETY: a pure function of the build.
    unsafe { weft_pystate_built_with_jit() != 0 }
}

/// True once the interpreter has begun to finalize.
pub fn is_finalizing() -> bool {
    // SAFETY: reads a runtime flag; safe with or without the GIL.
    unsafe { weft_is_finalizing() != 0 }
}

/// `Py_SET_REFCNT`, for a tp_dealloc that temporarily revives its object.
///
/// # Safety
/// GIL held; `o` is an object in its tp_dealloc.
pub unsafe fn set_refcnt(o: *mut Object, n: isize) {
    // SAFETY: `o` is a live object (in its tp_dealloc, not yet freed), so
    // writing its refcount field is in bounds; the GIL (contract) keeps any
    // other thread from reading or writing it meanwhile.
    unsafe { weft_set_refcnt(o, n) }
}

/// True when a suspended coroutine's tp_traverse reports what its frames
/// reference (CPython 3.15+), so the collector may treat it as ordinary garbage.
pub fn frames_traversable() -> bool {
    // SAFETY: a pure function of the build.
    unsafe { weft_pystate_frames_traversable() != 0 }
}

/// Bytes pystate.c reserves per [`Blob`] (`WEFT_PYSTATE_BYTES`).
pub fn c_blob_bytes() -> usize {
    // SAFETY: the C function returns a compile-time constant; it reads no
    // state and takes no pointer, so it is sound from any thread at any time.
    unsafe { weft_pystate_bytes() }
}

/// Checks that the C side reserves what the Rust side allocates.
pub fn layout_ok() -> bool {
    c_blob_bytes() == BLOB_BYTES
}

/// Sets the size of the data-stack chunk each new coroutine starts with
/// (at least 1 KiB). `_py` proves the GIL is held.
pub fn set_root_chunk_bytes(_py: Python<'_>, n: usize) {
    // SAFETY: the C function stores `n` into a plain static that pystate.c
    // reads only in `weft_pystate_run_new`, which runs with the GIL; holding
    // the GIL here (the token) orders this store against every such read, so
    // there is no data race, and no pointer is involved.
    unsafe { weft_set_root_chunk_bytes(n) }
}

impl Blob {
    /// Moves the running coroutine's state from the current thread state
    /// into this blob. `to` is the blob of the suspended coroutine that
    /// [`Blob::restore`]s next (3.11 hands it the tracing flag there), or
    /// null if none does. (The C side finds the thread state itself: on 3.11
    /// an inline load, cheaper than a call of `PyThreadState_Get`.)
    ///
    /// # Safety
    /// GIL held (so there is a current thread state); the blob holds
    /// nothing; `to` is null or a live blob other than this one, not
    /// referenced by Rust for the call.
    #[inline]
    pub unsafe fn save(&mut self, to: *mut Blob) {
        // SAFETY: P1 for the blob and for `to` (null allowed, checked in C;
        // another blob than `self`, so no aliasing); the C code reads and
        // resets the current thread state, which exists as the GIL is held
        // (contract), under the GIL (P2); the blob holds nothing, so
        // overwriting it leaks no reference; in `to` C writes one plain int
        // field only.
        unsafe { weft_pystate_save(self, to) }
    }

    /// What [`Blob::save`] hands to `to` when the running coroutine has
    /// finished instead ([`Blob::finish`] ran on `this`): `to` restores next.
    ///
    /// # Safety
    /// GIL held; `this` and `to` are distinct live blobs, not referenced by
    /// Rust for the call.
    #[inline]
    pub unsafe fn hand_over(this: *mut Blob, to: *mut Blob) {
        // SAFETY: P1 for both (contract: live, distinct, unreferenced); the C
        // code copies one int field from one to the other and runs no code.
        unsafe { weft_pystate_hand_over(this, to) }
    }

    /// Moves this blob's state back into the current thread state.
    ///
    /// # Safety
    /// GIL held; the blob was filled by [`Blob::save`] on this thread (the
    /// current thread state is the one it was saved from) and the
    /// coroutine's stack is back in place.
    #[inline]
    pub unsafe fn restore(&mut self) {
        // SAFETY: P1; the blob was filled by `save` on this thread (contract),
        // so the frame and data-stack pointers it installs into the thread
        // state belong to this thread and point at memory that is back in
        // place (the stack was restored first); P2 for the thread state.
        unsafe { weft_pystate_restore(self) }
    }

    /// Runs `body(arg)` as a brand-new coroutine on the current stack; `body`
    /// must never return. Returns only if no data stack could be allocated.
    /// Without `with_chunk` it starts with no Python data stack (for a body
    /// that is a C function: CPython makes one if it ever calls Python).
    ///
    /// Takes a raw pointer: the coroutine's whole life runs inside this call,
    /// and its switches save and restore through the same blob.
    ///
    /// # Safety
    /// GIL held; the running coroutine's state was just saved out of `ts`;
    /// `this` points to a live blob that stays at its address while the
    /// coroutine lives, and no Rust reference to it is live across the call.
    pub unsafe fn run_new(this: *mut Blob, ts: *mut ThreadState, with_chunk: bool, body: unsafe extern "C-unwind" fn(*mut c_void), arg: *mut c_void) -> bool {
        // SAFETY: P1; the running coroutine's state was saved out of `ts`
        // (contract), so the fresh frame chain and data stack the C code
        // installs overwrite nothing still owned; `body` is a valid function
        // the C code calls with `arg` and which never returns into it; P2.
        // `this` is P1's pointer (contract).
        unsafe { weft_pystate_run_new(ts, this, c_int::from(with_chunk), body, arg) == 0 }
    }

    /// # Safety
    /// GIL held; called by the GC with its own `visit`/`arg`.
    pub unsafe fn traverse(&mut self, visit: Visit, arg: *mut c_void) -> c_int {
        // SAFETY: P1; the C code only passes the blob's own strong references
        // (or skips nulls) to the GC's `visit` with the GC's `arg`, during a
        // collection that holds the GIL (contract, P2).
        unsafe { weft_pystate_traverse(self, visit, arg) }
    }

    /// Visits what the frames of the suspended coroutine reference (nothing
    /// unless [`frames_traversable`]).
    ///
    /// # Safety
    /// GIL held; called by the GC with its own `visit`/`arg`; the blob holds a
    /// coroutine that is suspended (saved, not running in any thread).
    pub unsafe fn traverse_frames(&mut self, visit: Visit, arg: *mut c_void) -> c_int {
        // SAFETY: P1; the coroutine is suspended (contract), so its saved
        // frames live in its data-stack chunks, which no thread is changing,
        // and the C code walks them read-only, handing their references to
        // the GC's `visit` under the GIL (P2).
        unsafe { weft_pystate_traverse_frames(self, visit, arg) }
    }

    /// Drops the references the blob holds. Raw pointer: the releases may
    /// run Python code (see the module docs).
    ///
    /// # Safety
    /// GIL held; `this` points to a live blob; no Rust reference to it is
    /// live across the call.
    pub unsafe fn clear(this: *mut Blob) {
        // SAFETY: P1 for `this` (contract); the C code nulls each slot
        // before dropping its reference, so none is dropped twice, even by
        // Python code the drop runs that comes back here; the GIL
        // (contract) makes those decrefs (and what they run) legal here.
        unsafe { weft_pystate_clear(this) }
    }

    /// The saved context (borrowed, may be null).
    ///
    /// # Safety
    /// GIL held.
    pub unsafe fn context(&mut self) -> *mut Object {
        // SAFETY: P1; a read of one pointer field of the blob; the GIL
        // (contract) keeps it from changing under us.
        unsafe { weft_pystate_context(self) }
    }

    /// The strong references held (context, handled exception), possibly null.
    ///
    /// # Safety
    /// GIL held.
    pub unsafe fn refs(&mut self) -> [*mut Object; 2] {
        // SAFETY: P1; two reads of the blob's reference slots (indices 0 and
        // 1, the only ones the C function accepts); the GIL (contract) keeps
        // them from changing under us.
        unsafe { [weft_pystate_ref(self, 0), weft_pystate_ref(self, 1)] }
    }

    /// Replaces the saved context (`ctx` borrowed, may be null). Raw
    /// pointer: releasing the old context may run Python code.
    ///
    /// # Safety
    /// GIL held; `this` points to a live blob; no Rust reference to it is
    /// live across the call.
    pub unsafe fn set_context(this: *mut Blob, ctx: *mut Object) {
        // SAFETY: P1 for `this` (contract); the C code takes a new reference
        // to `ctx` (borrowed, null allowed) and stores it before releasing
        // the old one, so the blob keeps owning exactly one; the GIL
        // (contract) makes the refcount changes legal.
        unsafe { weft_pystate_set_context(this, ctx) }
    }

    /// The top Python frame of a suspended coroutine (new reference or null).
    ///
    /// Raw pointer: making frame objects allocates.
    ///
    /// # Safety
    /// GIL held; the blob is a suspended coroutine's (of any thread, alive or
    /// exited: `ts`, the caller's own thread state, is only lent to make the
    /// frame object); `this` points to it and no Rust reference to it is
    /// live across the call.
    pub unsafe fn top_frame(this: *mut Blob, ts: *mut ThreadState) -> *mut Object {
        // SAFETY: P1 for `this` (contract); the coroutine is suspended
        // (contract), so its frames are saved and unchanging; `ts` is the
        // caller's own thread state, only used to make the frame object,
        // under the GIL (P2).
        unsafe { weft_pystate_top_frame(ts, this) }
    }

    /// Gives back the data-stack chunks of a coroutine left suspended by a
    /// thread that has exited, if nothing outside can still reach its frames
    /// (see pystate.c); the references its frames hold stay taken. Returns
    /// true if they were given back.
    ///
    /// Takes a raw pointer, not `&mut self`: the releases at its end may run
    /// Python code (a frame's last reference, a `__del__`) that reaches this
    /// coroutine again, so no Rust reference to the blob may be live across
    /// the call. The C side has cleared the blob by then (pystate.c).
    ///
    /// # Safety
    /// GIL held; `this` points to a live blob (P1's size and alignment) that
    /// holds the saved state of a coroutine that was suspended (not running)
    /// when its thread exited, and will never run; no reference to it is live.
    pub unsafe fn release_orphaned(this: *mut Blob) -> bool {
        // SAFETY: P1 for `this` (contract); the coroutine will never run
        // again (its thread exited while it was suspended), so freeing its
        // data-stack chunks cannot pull memory from under a running frame,
        // and the C code frees them only when no frame object outside still
        // points into them; P2.
        unsafe { weft_pystate_release_orphaned(this) != 0 }
    }

    /// Moves the finished coroutine's context into this blob (it stays its
    /// gr_context) and releases its data stack. Raw pointer: the old
    /// context and the handled exception it releases may run Python code.
    ///
    /// # Safety
    /// GIL held; the running coroutine's body has returned; `ts` is current;
    /// `this` points to a live blob and no Rust reference to it is live
    /// across the call.
    pub unsafe fn finish(this: *mut Blob, ts: *mut ThreadState) {
        // SAFETY: P1 for `this` (contract); the body returned (contract), so
        // no frame of this coroutine is live and its data stack can be
        // released; `ts` is the current thread state, changed under the GIL
        // (P2).
        unsafe { weft_pystate_finish(ts, this) }
    }
}

/// The running coroutine's context (borrowed, may be null).
///
/// # Safety
/// GIL held; `ts` is the current thread state.
pub unsafe fn thread_context(ts: *mut ThreadState) -> *mut Object {
    // SAFETY: a read of `ts->context` of the caller's own, live thread state
    // (contract); the GIL keeps it from changing under us (P2).
    unsafe { weft_thread_context(ts) }
}

/// Replaces the running coroutine's context (`ctx` borrowed, may be null).
///
/// # Safety
/// GIL held; `ts` is the current thread state.
pub unsafe fn set_thread_context(ts: *mut ThreadState, ctx: *mut Object) {
    // SAFETY: the C code takes a new reference to `ctx` (null allowed),
    // releases the old one and bumps `context_ver` (so cached lookups see the
    // change), on the caller's own thread state (contract), under the GIL (P2).
    unsafe { weft_thread_set_context(ts, ctx) }
}

#[cfg(test)]
#[path = "../build_checks.rs"]
mod build_checks;

#[cfg(test)]
mod tests {
    use super::build_checks::check_interpreter;

    #[test]
    fn default_builds_of_supported_versions_pass() {
        for v in ["3.11", "3.12", "3.13", "3.14", "3.15"] {
            assert_eq!(check_interpreter("python", v, "0"), Ok(()));
            assert_eq!(check_interpreter("python", v, "None"), Ok(()), "3.11/3.12 have no Py_GIL_DISABLED");
        }
    }

    #[test]
    fn free_threaded_builds_are_refused_with_what_to_do() {
        for v in ["3.13", "3.14"] {
            let why = check_interpreter("/usr/bin/python3.14t", v, "1").unwrap_err();
            assert!(why.contains("free-threaded"), "{why}");
            assert!(why.contains("/usr/bin/python3.14t"), "{why}");
            assert!(why.contains(&format!("python{v} instead of python{v}t")), "{why}");
        }
    }

    #[test]
    fn unsupported_versions_are_refused() {
        let why = check_interpreter("python3.10", "3.10", "None").unwrap_err();
        assert!(why.contains("3.11, 3.12, 3.13, 3.14, 3.15"), "{why}");
    }
}
