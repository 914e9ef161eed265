//! The switch without Python: coroutines made of plain Rust functions.
use super::*;
use std::cell::RefCell;

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
    let c = CURRENT.with(|c| unsafe { *c.get() });
    if c.is_null() { main_slice() } else { c }
}
fn set_current(s: *mut Slice) {
    CURRENT.with(|c| unsafe { *c.get() = s });
}
fn log(s: String) {
    LOG.with(|l| l.borrow_mut().push(s));
}

/// Switches to `to`, which has started already.
fn switch_to(to: *mut Slice) {
    let from = current();
    set_current(to);
    assert_eq!(unsafe { switch(from, to) }, Arrival::Resumed);
}

/// Starts `co`; returns when `co` switches back to us or finishes.
#[inline(never)]
fn start(co: *mut Co) {
    let marker = core::hint::black_box(0u8);
    let from = current();
    // SAFETY: `from` runs now; `marker` lives until this frame returns.
    unsafe { (*co).slice.begin(&marker as *const u8 as *mut u8, from) };
    run_new(from, co);
    core::hint::black_box(&marker);
}

#[inline(never)]
fn run_new(from: *mut Slice, co: *mut Co) {
    let target = unsafe { &mut (*co).slice as *mut Slice };
    set_current(target);
    match unsafe { switch(from, target) } {
        Arrival::Resumed => {}
        Arrival::Started => {
            unsafe {
                (*co).slice.mark_running();
                ((*co).body)();
                (*co).slice.mark_dead();
            }
            set_current(from);
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
        switch_to(unsafe { &mut (*co).slice });
    }
    assert!(!unsafe { (*co).slice.is_active() });
    let l = LOG.with(|l| l.borrow().clone());
    assert_eq!(l.len(), 1001);
    assert_eq!(l[999], "co 999");
    assert_eq!(l[1000], format!("co sum {}", (0..1000u64).sum::<u64>()));
    assert_eq!(mine.len(), 1003);
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
            let r = recurse(20, &mut || switch_to(unsafe { &mut (**a_slot.get()).slice }));
            log(format!("b {r}"));
        }
    });
    let a = new_co(move || {
        let r = recurse(50, &mut || {
            start(b);
            for _ in 0..10 {
                switch_to(unsafe { &mut (*b).slice });
            }
        });
        log(format!("a {r}"));
    });
    unsafe { *a_slot.get() = a };
    start(a);
    assert!(!unsafe { (*a).slice.is_active() });
    assert!(!unsafe { (*b).slice.is_active() });
    let l = LOG.with(|l| l.borrow().clone());
    assert_eq!(l.iter().filter(|s| *s == "b 210").count(), 10);
    assert_eq!(l.last().unwrap(), &format!("a {}", (1..=50).sum::<u32>()));
    drop(unsafe { Box::from_raw(a) });
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
    assert!(!unsafe { (*co).slice.is_active() });
    let seen = seen.borrow();
    assert_eq!(seen.len(), ROUNDS as usize);
    for (r, (vals, out)) in seen.iter().enumerate() {
        assert_regs_eq(out, vals, &format!("coroutine after round {r}"));
    }
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
    switch_to(unsafe { &mut (*co).slice });
    drop(unsafe { Box::from_raw(co) });
    let trace = TRACE.with(|t| t.borrow_mut().take()).expect("save hook ran");
    // Innermost first: the hook in save_current, the routine, then its callers.
    let at = |name: &str| trace.find(name).unwrap_or_else(|| panic!("no frame {name} in:\n{trace}"));
    assert!(at("save_current") < at("weft_stack_switch"), "{trace}");
    assert!(at("weft_stack_switch") < at("run_new"), "{trace}");
    // The test harness's frame (the test function itself may be inlined).
    assert!(at("run_new") < at("__rust_begin_short_backtrace"), "{trace}");
}
