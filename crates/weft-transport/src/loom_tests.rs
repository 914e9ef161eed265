//! loom models of the direct-read protocol: every interleaving of the
//! threads below is run (`RUSTFLAGS="--cfg loom" cargo test -p
//! weft-transport --release loom`). Time stands still under loom and its
//! timed waits never time out (crate::sync), so each model also shows that
//! the protocol makes progress without relying on a timeout: a lost
//! wake-up shows up as a deadlock that loom reports.

use std::time::{Duration, Instant};

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::role::{Acquire, Holder, Role};
use crate::wake::{take_deferred, Event, WaiterFlag};

fn far() -> Instant {
    crate::sync::now() + Duration::from_secs(3600)
}

/// Touch the receive buffer the role guards: loom reports two threads in
/// here at once as a data race.
fn read_buffer(buf: &UnsafeCell<usize>) {
    buf.with_mut(|p| {
        // SAFETY: loom's cell checks the claim this makes, that the caller
        // holds the role and so no other thread is inside `with_mut` (a
        // violation fails the model instead of racing).
        unsafe { *p += 1 }
    });
}

#[test]
fn loom_role_handed_from_receiver_to_waiting_thread_and_back() {
    loom::model(|| {
        let role = Arc::new(Role::new().unwrap());
        let buf = Arc::new(UnsafeCell::new(0usize));
        assert!(role.receiver_acquire(Duration::ZERO, far()));
        let receiver = {
            let (role, buf) = (role.clone(), buf.clone());
            thread::spawn(move || {
                // holding the role: read, then block in poll until kicked
                read_buffer(&buf);
                role.poll_kick();
                assert!(role.receiver_yield_if_wanted(), "kicked, but nobody wanted the role");
                // take it back once the waiting thread hands it over
                assert!(role.receiver_acquire(Duration::ZERO, far()));
                read_buffer(&buf);
            })
        };
        assert_eq!(role.user_acquire(1, &|| false, far()), Acquire::Got);
        read_buffer(&buf);
        role.release(Holder::User(1), true);
        receiver.join().unwrap();
        assert_eq!(role.holder(), Holder::Receiver);
    });
}

#[test]
fn loom_role_two_waiting_threads_never_hold_it_together() {
    loom::model(|| {
        let role = Arc::new(Role::new().unwrap());
        let buf = Arc::new(UnsafeCell::new(0usize));
        let users: Vec<_> = (1..=2u64)
            .map(|me| {
                let (role, buf) = (role.clone(), buf.clone());
                thread::spawn(move || {
                    assert_eq!(role.user_acquire(me, &|| false, far()), Acquire::Got);
                    read_buffer(&buf);
                    role.release(Holder::User(me), false);
                })
            })
            .collect();
        for u in users {
            u.join().unwrap();
        }
        // the receiver takes the role back without being handed it
        // (no-one waits, grace zero): released and free
        assert!(role.receiver_acquire(Duration::ZERO, far()));
    });
}

#[test]
fn loom_role_receiver_blocked_behind_a_reader_gets_it_by_hand_over() {
    // The receiver waits while a waiting thread holds the role; that thread
    // meets a frame only the receiver may dispatch and hands the role over:
    // the receiver must get it without a timeout. (A plain release is left
    // to the receiver's grace period: a timed wait, outside loom's reach.)
    loom::model(|| {
        let role = Arc::new(Role::new().unwrap());
        assert_eq!(role.user_acquire(1, &|| false, far()), Acquire::Got);
        let receiver = {
            let role = role.clone();
            thread::spawn(move || assert!(role.receiver_acquire(Duration::from_secs(60), far())))
        };
        role.release(Holder::User(1), true);
        receiver.join().unwrap();
        assert_eq!(role.holder(), Holder::Receiver);
    });
}

#[test]
fn loom_role_poke_after_ready_wakes_a_thread_waiting_for_the_role() {
    loom::model(|| {
        let role = Arc::new(Role::new().unwrap());
        let flag = Arc::new(AtomicBool::new(false));
        assert_eq!(role.user_acquire(1, &|| false, far()), Acquire::Got);
        let waiter = {
            let (role, flag) = (role.clone(), flag.clone());
            thread::spawn(move || role.user_acquire(2, &|| flag.load(Ordering::SeqCst), far()))
        };
        flag.store(true, Ordering::SeqCst);
        role.poke();
        assert_eq!(waiter.join().unwrap(), Acquire::Ready);
        assert_eq!(role.holder(), Holder::User(1));
    });
}

#[test]
fn loom_role_close_refuses_a_waiting_thread() {
    loom::model(|| {
        let role = Arc::new(Role::new().unwrap());
        assert!(role.receiver_acquire(Duration::ZERO, far()));
        let waiter = {
            let role = role.clone();
            thread::spawn(move || role.user_acquire(2, &|| false, far()))
        };
        role.close();
        // the receiver never yields here: the close is what ends the wait
        let got = waiter.join().unwrap();
        assert_eq!(got, Acquire::Refused);
    });
}

#[test]
fn loom_direct_waiter_flag_and_put_never_both_miss() {
    // The waiting thread's last look before it polls, against a put from
    // another thread (direct.rs, ItemQueue.push): the waiter says it is
    // blocked, then looks at the event; the putter sets the event, then
    // looks at the flag and pokes. The waiter must end its poll. (With
    // plain SeqCst stores and loads and no fences, loom reports a deadlock
    // here: it models SeqCst accesses as AcqRel.)
    loom::model(|| {
        let role = Arc::new(Role::new().unwrap());
        let ready = Event::new();
        let waiting = Arc::new(WaiterFlag::new());
        assert_eq!(role.user_acquire(1, &|| false, far()), Acquire::Got);
        let putter = {
            let (role, ready, waiting) = (role.clone(), ready.clone(), waiting.clone());
            thread::spawn(move || {
                ready.set();
                if waiting.must_poke() {
                    role.poke();
                }
            })
        };
        if waiting.announce(&ready) {
            role.poll_kick(); // a missed poke blocks here forever
        }
        waiting.lower();
        putter.join().unwrap();
        assert!(ready.is_set());
    });
}

#[test]
fn loom_wake_deferred_wakeup_reaches_the_waiter() {
    loom::model(|| {
        let ev = Event::new();
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || assert!(ev.wait_until(None)))
        };
        // this thread is a receiver thread: it holds wake-ups back
        drop(take_deferred());
        ev.set();
        assert!(ev.is_set());
        let mut held = take_deferred();
        assert_eq!(held.len(), 1);
        held.wake(); // what read_frames does before it blocks to read
        waiter.join().unwrap();
    });
}

#[test]
fn loom_wake_set_clear_and_wait() {
    // `ItemQueue.get`: clear, look, wait; a put after the look sets the
    // event and must wake the wait.
    loom::model(|| {
        let ev = Event::new();
        let item = Arc::new(AtomicBool::new(false));
        let putter = {
            let (ev, item) = (ev.clone(), item.clone());
            thread::spawn(move || {
                item.store(true, Ordering::SeqCst);
                ev.set();
            })
        };
        loop {
            ev.clear();
            if item.load(Ordering::SeqCst) {
                break;
            }
            assert!(ev.wait_until(None));
        }
        putter.join().unwrap();
    });
}

#[test]
fn loom_wake_waker_runs_exactly_once() {
    loom::model(|| {
        let ev = Event::new();
        let runs = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let setter = {
            let ev = ev.clone();
            thread::spawn(move || ev.set())
        };
        let r = runs.clone();
        ev.add_waker(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        setter.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}
