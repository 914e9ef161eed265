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
