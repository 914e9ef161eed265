//! The switch without Python: coroutines made of plain Rust functions.
//!
//! Ground rules the `SAFETY` notes below rest on:
//! * **T1** every `*mut Co` comes from [`new_co`] (`Box::into_raw`) and is freed
//!   exactly once, by the test that made it, after its coroutine finished; so
//!   between the two, `(*co)` is a live, never-moving `Co` (the S1 half of
//!   "fixed address").
//! * **T2** tests use raw pointers only: no `&`/`&mut` to a `Co` or a `Slice`
//!   is held across a switch, so the raw accesses inside `save_current` and
//!   `restore_target` never alias a live reference. The one reference held
//!   across switches is the `&mut` to a coroutine's `body` while it runs,
//!   which is a field disjoint from `slice`.
//! * **T3** each test runs on one thread (libtest gives each test its own), so
//!   `MAIN`, `CURRENT` and every slice are of that thread (S1), and `CURRENT`
//!   always names the slice that runs: it is set to the target right before
//!   every switch, and nothing runs between that and the switch.
use super::*;
use std::cell::{RefCell, UnsafeCell};

struct Co {
    slice: Slice,
    body: Box<dyn FnMut()>,
}

thread_local! {
    static MAIN: UnsafeCell<Slice> = const { UnsafeCell::new(Slice::new_main()) };
    static CURRENT: UnsafeCell<*mut Slice> = const { UnsafeCell::new(ptr::null_mut()) };
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn main_slice() -> *mut Slice {
    MAIN.with(|m| m.get())
}
fn current() -> *mut Slice {
    // SAFETY: T3: only this thread touches its CURRENT, and the closure copies
    // the pointer out without holding a reference past this statement (nothing
    // in it can re-enter and write the cell meanwhile).
    let c = CURRENT.with(|c| unsafe { *c.get() });
    if c.is_null() { main_slice() } else { c }
}
fn set_current(s: *mut Slice) {
    // SAFETY: as in `current`: a single write of a `Copy` value to a
    // thread-local cell that no live reference points into.
    CURRENT.with(|c| unsafe { *c.get() = s });
}
fn log(s: String) {
    LOG.with(|l| l.borrow_mut().push(s));
}

/// Switches to `to`, which has started already.
fn switch_to(to: *mut Slice) {
    let from = current();
    set_current(to);
    // SAFETY: `switch`'s contract: `from` is the running slice (T3) and `to`,
    // which every caller passes started (it switched away before), is a live
    // slice of this thread at a fixed address (T1: in a live `Co`, or MAIN, a
    // thread-local that lives as long as the thread). No reference into this
    // frame's stack is held by anyone else (T2), so another coroutine
    // overwriting these bytes while we are away cannot invalidate one.
    assert_eq!(unsafe { switch(from, to) }, Arrival::Resumed);
}

/// Starts `co`; returns when `co` switches back to us or finishes.
#[inline(never)]
fn start(co: *mut Co) {
    let marker = core::hint::black_box(0u8);
    let from = current();
    // SAFETY: `begin`'s contract: `from` is this thread's running slice (T3).
    // `(*co)` is a live `Co` (T1) that no reference points into (T2). `marker`
    // lives in this frame, which stays on the stack until the coroutine
    // switched back or finished (`run_new` returns only then), so everything
    // below it may belong to the new coroutine (S4).
    unsafe { (*co).slice.begin(&marker as *const u8 as *mut u8, from) };
    run_new(from, co);
    core::hint::black_box(&marker);
}

#[inline(never)]
fn run_new(from: *mut Slice, co: *mut Co) {
    // SAFETY: T1: `co` is live; only a raw pointer to its slice is made (the
    // `&mut` ends within the expression), so nothing aliases it (T2).
    let target = unsafe { &mut (*co).slice as *mut Slice };
    set_current(target);
    // SAFETY: `switch`'s contract: `from` runs (T3, `start` got it from
    // `current()`), `target` is live and fixed (T1), and `begin` was called on
    // it from `start`'s frame, our caller, which stays on the stack (S4).
    match unsafe { switch(from, target) } {
        Arrival::Resumed => {}
        Arrival::Started => {
            // SAFETY: we now run as the new coroutine on the stack below
            // `start`'s marker; `co` is live (T1). `mark_running` and
            // `mark_dead` take short `&mut`s to `slice`, while no other code
            // runs; the body is called through `&mut (*co).body`, a field
            // disjoint from `slice`, which is the only place other coroutines
            // reach (by raw pointer) while the body is suspended (T2).
            unsafe {
                (*co).slice.mark_running();
                ((*co).body)();
                (*co).slice.mark_dead();
            }
            set_current(from);
            // SAFETY: `switch`'s contract: `target` is the running slice (just
            // marked dead: `save_current` skips it), `from` is the slice that
            // started us, still suspended in `start` (T1/T3: MAIN or a live
            // `Co`, which frees no `Co` before it finished). This frame never
            // returns (`unreachable!` below), as `Arrival::Started` requires.
            unsafe { switch(target, from) };
            unreachable!("a finished coroutine was resumed");
        }
    }
}

fn new_co(body: impl FnMut() + 'static) -> *mut Co {
    Box::into_raw(Box::new(Co { slice: Slice::new(), body: Box::new(body) }))
}

#[test]
fn ping_pong_keeps_locals_on_both_sides() {
    let main = main_slice();
    let co = new_co(move || {
        let mut local = [0u64; 64]; // something on this coroutine's stack
        for i in 0..1000u64 {
            local[(i % 64) as usize] += i;
            log(format!("co {i}"));
            switch_to(main);
        }
        log(format!("co sum {}", local.iter().sum::<u64>()));
    });
    start(co);
    let mut mine = vec![1u8; 3];
    for i in 0..1000 {
        mine.push(i as u8);
        // SAFETY: T1: `co` is live until the `Box::from_raw` below; the
        // `&mut` is coerced to a raw pointer at once (T2).
        switch_to(unsafe { &mut (*co).slice });
    }
    // SAFETY: T1; the coroutine finished, so nothing else accesses its slice
    // while this shared borrow lives.
    assert!(!unsafe { (*co).slice.is_active() });
    let l = LOG.with(|l| l.borrow().clone());
    assert_eq!(l.len(), 1001);
    assert_eq!(l[999], "co 999");
    assert_eq!(l[1000], format!("co sum {}", (0..1000u64).sum::<u64>()));
    assert_eq!(mine.len(), 1003);
    // SAFETY: T1: `co` came from `Box::into_raw` and is freed once, here. Its
    // coroutine finished (asserted above), so no slice's `prev` points at it
    // (`restore_target` skipped it when it switched away for the last time)
    // and no later switch reads it.
    drop(unsafe { Box::from_raw(co) });
}

#[test]
fn nested_coroutines_with_deep_stacks() {
    // a starts b from deep inside a recursion, so their slices overlap partially.
    fn recurse(n: u32, at_bottom: &mut dyn FnMut()) -> u32 {
        let pad = core::hint::black_box([n; 32]);
        if n == 0 {
            at_bottom();
            return 0;
        }
        pad[5] + recurse(n - 1, at_bottom)
    }
    let a_slot: &'static UnsafeCell<*mut Co> = Box::leak(Box::new(UnsafeCell::new(ptr::null_mut())));
    let b = new_co(move || {
        for _ in 0..10 {
            // SAFETY: `a_slot` holds `a` (written before `a` started, and `b`
            // runs only once `a` started it); T3: only this thread reads the
            // cell, with no reference kept. `a` is live (T1) and suspended in
            // `start(b)`, so switching to it is `switch_to`'s started target.
            let r = recurse(20, &mut || switch_to(unsafe { &mut (**a_slot.get()).slice }));
            log(format!("b {r}"));
        }
    });
    let a = new_co(move || {
        let r = recurse(50, &mut || {
            start(b);
            for _ in 0..10 {
                // SAFETY: T1: `b` is live until the end of the test; it was
                // started above and has switched back to us (T2: raw pointer).
                switch_to(unsafe { &mut (*b).slice });
            }
        });
        log(format!("a {r}"));
    });
    // SAFETY: nothing reads the cell yet (`b` runs only after `a` started);
    // a single write by the only thread that uses it (T3).
    unsafe { *a_slot.get() = a };
    start(a);
    // SAFETY: T1: both are live; both coroutines finished, so nothing else
    // accesses their slices while these shared borrows live.
    assert!(!unsafe { (*a).slice.is_active() });
    // SAFETY: as above.
    assert!(!unsafe { (*b).slice.is_active() });
    let l = LOG.with(|l| l.borrow().clone());
    assert_eq!(l.iter().filter(|s| *s == "b 210").count(), 10);
    assert_eq!(l.last().unwrap(), &format!("a {}", (1..=50).sum::<u32>()));
    // SAFETY: T1: each freed once, here, after its coroutine finished (asserted
    // above), so no slice on the chain points at either any more.
    drop(unsafe { Box::from_raw(a) });
    // SAFETY: as above.
    drop(unsafe { Box::from_raw(b) });
}

// ---- callee-saved state across a switch -------------------------------------
//
// `clobber_call(vals, out, f, arg)` (test-only assembly below) loads every
// callee-saved register and the FP control state from `vals`, calls `f(arg)`,
// and stores what those registers hold after `f` returns into `out`. Compiled
// code must preserve them across `f`; here `f` switches to another coroutine,
// which loads different values the same way and switches back. Any register
// the switch fails to save or restore shows up as a mismatch.

/// Slots in `vals`/`out`; `USED` of them are meaningful on this target.
const NREGS: usize = 19;

/// x86-64: rbx, rbp, r12-r15, MXCSR (low 32 bits of slot 6), x87 control word
/// (low 16 bits of slot 7).
#[cfg(target_arch = "x86_64")]
const USED: usize = 8;
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    "weft_test_clobber_call:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 24", // [rsp] out, [rsp+8] MXCSR, [rsp+12] x87 CW: rsp is 16-aligned
    "mov [rsp], rsi",
    "stmxcsr [rsp + 8]",
    "fnstcw [rsp + 12]",
    "mov rbx, [rdi]",
    "mov rbp, [rdi + 8]",
    "mov r12, [rdi + 16]",
    "mov r13, [rdi + 24]",
    "mov r14, [rdi + 32]",
    "mov r15, [rdi + 40]",
    "ldmxcsr [rdi + 48]",
    "fldcw [rdi + 56]",
    "mov rax, rdx",
    "mov rdi, rcx",
    "call rax",
    "mov rsi, [rsp]",
    "mov [rsi], rbx",
    "mov [rsi + 8], rbp",
    "mov [rsi + 16], r12",
    "mov [rsi + 24], r13",
    "mov [rsi + 32], r14",
    "mov [rsi + 40], r15",
    "stmxcsr [rsi + 48]",
    "fnstcw [rsi + 56]",
    "ldmxcsr [rsp + 8]",
    "fldcw [rsp + 12]",
    "add rsp, 24",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
);

/// AArch64: x19-x28, d8-d15, FPCR.
#[cfg(target_arch = "aarch64")]
const USED: usize = 19;
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    "weft_test_clobber_call:",
    "sub sp, sp, #176",
    "stp x29, x30, [sp, #0]",
    "mov x29, sp",
    "stp x19, x20, [sp, #16]",
    "stp x21, x22, [sp, #32]",
    "stp x23, x24, [sp, #48]",
    "stp x25, x26, [sp, #64]",
    "stp x27, x28, [sp, #80]",
    "stp d8, d9, [sp, #96]",
    "stp d10, d11, [sp, #112]",
    "stp d12, d13, [sp, #128]",
    "stp d14, d15, [sp, #144]",
    "mrs x9, fpcr",
    "stp x9, x1, [sp, #160]", // the caller's FPCR, and `out`
    "ldp x19, x20, [x0, #0]",
    "ldp x21, x22, [x0, #16]",
    "ldp x23, x24, [x0, #32]",
    "ldp x25, x26, [x0, #48]",
    "ldp x27, x28, [x0, #64]",
    "ldp d8, d9, [x0, #80]",
    "ldp d10, d11, [x0, #96]",
    "ldp d12, d13, [x0, #112]",
    "ldp d14, d15, [x0, #128]",
    "ldr x9, [x0, #144]",
    "msr fpcr, x9",
    "mov x0, x3",
    "blr x2",
    "ldr x1, [sp, #168]",
    "stp x19, x20, [x1, #0]",
    "stp x21, x22, [x1, #16]",
    "stp x23, x24, [x1, #32]",
    "stp x25, x26, [x1, #48]",
    "stp x27, x28, [x1, #64]",
    "stp d8, d9, [x1, #80]",
    "stp d10, d11, [x1, #96]",
    "stp d12, d13, [x1, #112]",
    "stp d14, d15, [x1, #128]",
    "mrs x9, fpcr",
    "str x9, [x1, #144]",
    "ldr x9, [sp, #160]",
    "msr fpcr, x9",
    "ldp d14, d15, [sp, #144]",
    "ldp d12, d13, [sp, #128]",
    "ldp d10, d11, [sp, #112]",
    "ldp d8, d9, [sp, #96]",
    "ldp x27, x28, [sp, #80]",
    "ldp x25, x26, [sp, #64]",
    "ldp x23, x24, [sp, #48]",
    "ldp x21, x22, [sp, #32]",
    "ldp x19, x20, [sp, #16]",
    "ldp x29, x30, [sp, #0]",
    "add sp, sp, #176",
    "ret",
);

unsafe extern "C" {
    fn weft_test_clobber_call(vals: *const u64, out: *mut u64, f: extern "C" fn(*mut c_void), arg: *mut c_void);
}

/// Distinct register values for one side of a switch; `side` picks one of two
/// FP control settings, each harmless to the integer code that runs meanwhile
/// and each different from the default.
fn sentinels(seed: u64, side: usize) -> [u64; NREGS] {
    let mut v = [0u64; NREGS];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((i as u64 + 1) * 0x0101_0101_0101_0101);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR: all exceptions masked, plus flush-to-zero or denormals-are-zero.
        v[6] = [0x9F80, 0x1FC0][side];
        // x87 control word: all masked, 53-bit or 24-bit precision (default 64).
        v[7] = [0x027F, 0x007F][side];
    }
    #[cfg(target_arch = "aarch64")]
    {
        // FPCR: flush-to-zero + default NaN, or flush-to-zero alone.
        v[18] = [0x0300_0000, 0x0100_0000][side];
    }
    v
}

fn clobber_call(vals: &[u64; NREGS], f: extern "C" fn(*mut c_void), arg: *mut c_void) -> [u64; NREGS] {
    let mut out = [0u64; NREGS];
    // SAFETY: the routine restores everything it loads before returning, and
    // `vals`/`out` hold NREGS slots.
    unsafe { weft_test_clobber_call(vals.as_ptr(), out.as_mut_ptr(), f, arg) };
    out
}

#[track_caller]
fn assert_regs_eq(got: &[u64; NREGS], want: &[u64; NREGS], what: &str) {
    for i in 0..USED {
        assert_eq!(got[i], want[i], "{what}: slot {i} is {:#x}, expected {:#x}", got[i], want[i]);
    }
}

extern "C" fn start_co(co: *mut c_void) {
    start(co as *mut Co);
}
extern "C" fn resume_co(co: *mut c_void) {
    // SAFETY: called only by `clobber_call` with the test's `*mut Co`, which
    // is live (T1) and suspended (it switched back to the test); T2.
    switch_to(unsafe { &mut (*(co as *mut Co)).slice });
}
extern "C" fn back_to(slice: *mut c_void) {
    switch_to(slice as *mut Slice);
}

#[test]
fn switch_preserves_callee_saved_registers_and_fp_control() {
    const ROUNDS: u64 = 4;
    let main = main_slice();
    // What the coroutine saw after each of its switches: (expected, got).
    let seen: &'static RefCell<Vec<([u64; NREGS], [u64; NREGS])>> = Box::leak(Box::new(RefCell::new(Vec::new())));
    let co = new_co(move || {
        for r in 0..ROUNDS {
            let vals = sentinels(1000 + r, 1);
            let out = clobber_call(&vals, back_to, main as *mut c_void);
            seen.borrow_mut().push((vals, out));
        }
    });
    // Start: the coroutine runs on top of this frame's registers, sets its own
    // and switches back.
    let vals = sentinels(1, 0);
    let out = clobber_call(&vals, start_co, co as *mut c_void);
    assert_regs_eq(&out, &vals, "main after start");
    for r in 0..ROUNDS {
        let vals = sentinels(2 + r, 0);
        let out = clobber_call(&vals, resume_co, co as *mut c_void);
        assert_regs_eq(&out, &vals, &format!("main after round {r}"));
    }
    // SAFETY: T1; the coroutine finished, so nothing else accesses its slice
    // while this shared borrow lives.
    assert!(!unsafe { (*co).slice.is_active() });
    let seen = seen.borrow();
    assert_eq!(seen.len(), ROUNDS as usize);
    for (r, (vals, out)) in seen.iter().enumerate() {
        assert_regs_eq(out, vals, &format!("coroutine after round {r}"));
    }
    // SAFETY: T1: freed once, here, after its coroutine finished (asserted
    // above): no slice on the chain points at it.
    drop(unsafe { Box::from_raw(co) });
}

// ---- unwinding through the switch routine -----------------------------------

thread_local! {
    static TRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn capture_trace() {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            *t = Some(std::backtrace::Backtrace::force_capture().to_string());
        }
    });
}

/// A backtrace taken inside `save` (called from the arch routine) reaches the
/// frames above the routine: its CFI describes the frame correctly. (With a
/// wrong CFI this test crashes, or loops in the unwinder until the runner's
/// timeout: scripts/test-aarch64.sh runs it under `timeout`.)
#[test]
fn backtrace_unwinds_through_the_switch_routine() {
    let main = main_slice();
    let co = new_co(move || switch_to(main));
    SAVE_HOOK.with(|h| h.set(Some(capture_trace)));
    start(co);
    SAVE_HOOK.with(|h| h.set(None));
    // SAFETY: T1: `co` is live and suspended in its `switch_to(main)` (T2).
    switch_to(unsafe { &mut (*co).slice });
    // SAFETY: T1; its body returned after that resume (asserted here), so no
    // slice on the chain points at it: freed once, here.
    assert!(!unsafe { (*co).slice.is_active() });
    // SAFETY: as above.
    drop(unsafe { Box::from_raw(co) });
    let trace = TRACE.with(|t| t.borrow_mut().take()).expect("save hook ran");
    // Innermost first: the hook in save_current, the routine, then its callers.
    let at = |name: &str| trace.find(name).unwrap_or_else(|| panic!("no frame {name} in:\n{trace}"));
    assert!(at("save_current") < at("weft_stack_switch"), "{trace}");
    assert!(at("weft_stack_switch") < at("run_new"), "{trace}");
    // The test harness's frame (the test function itself may be inlined).
    assert!(at("run_new") < at("__rust_begin_short_backtrace"), "{trace}");
}
