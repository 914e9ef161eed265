//! Who reads a gateway's descriptor: the receiver thread, or a thread that
//! waits for an item and reads for itself ("direct read", docs/gateways.md).
//!
//! A thread blocked in `Channel.receive()` that reads the frames itself saves
//! the two thread wake-ups of a hand-off (receiver thread woken by the data,
//! then the waiter woken by the receiver) on every message. The receiver
//! thread stays for everything else: callbacks, closes, remote_exec, and
//! whatever arrives while nobody waits. [`Role`] is the token that says which
//! one may touch the descriptor and the receive buffer:
//!
//! * A waiting thread asks for the role ([`Role::user_acquire`]); if the
//!   receiver thread holds it, it is kicked out of its `poll` and gives the
//!   role up at its next look ([`Role::receiver_yield_if_wanted`]).
//! * The receiver takes the role back ([`Role::receiver_acquire`]) once no
//!   thread has wanted it for a grace period, or at once when a waiting
//!   thread hands it a frame only the receiver may dispatch
//!   ([`Role::release`] with `to_receiver`).
//! * The holder blocks in [`Role::poll`] on the descriptor and a kick pipe,
//!   so it can be woken without data ([`Role::poke`]).
//!
//! Invariants (checked under every interleaving by the loom models in
//! `loom_tests`): at most one holder at a time; a thread blocked for the
//! role is notified by every change that could let it go on (a release, a
//! yield, a close, a poke, a hand-over to the receiver), so no one depends
//! on a timeout to make progress, with one exception by design: after a
//! plain release (no hand-over, nobody waiting) the receiver takes the role
//! back when its grace period has passed, which its timed wait measures.
//! The loop that reads for a waiting thread is [`crate::direct`].

use std::io;
#[cfg(not(all(test, loom)))]
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::sync::{lock, now, Condvar, Mutex, MutexGuard};

/// Who holds the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: the next taker may read.
    Nobody,
    /// The receiver thread.
    Receiver,
    /// A waiting thread, by its id.
    User(u64),
}

#[derive(Debug)]
struct State {
    holder: Holder,
    users_waiting: usize,
    released_at: Instant,
    receiver_now: bool,
    closed: bool,
}

/// What [`Role::user_acquire`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The caller holds the role.
    Got,
    /// The caller's own condition became true first.
    Ready,
    /// The time limit passed.
    Timeout,
    /// The receiver has finished (or a frame waits for it): wait normally.
    Refused,
}

/// What [`Role::poll`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The descriptor is readable (data, end of stream or an error).
    Data,
    /// Someone poked the holder.
    Kick,
    /// The time limit passed.
    Timeout,
}

/// The read role of one descriptor.
#[derive(Debug)]
pub struct Role {
    state: Mutex<State>,
    cv: Condvar,
    kick: Kick,
}

/// Wakes the holder out of its poll without data: a non-blocking pipe in
/// the poll set; under loom, a flag and a condition variable.
#[derive(Debug)]
struct Kick {
    #[cfg(not(all(test, loom)))]
    r: RawFd,
    #[cfg(not(all(test, loom)))]
    w: RawFd,
    #[cfg(all(test, loom))]
    kicked: Mutex<bool>,
    #[cfg(all(test, loom))]
    cv: Condvar,
}

#[cfg(not(all(test, loom)))]
impl Kick {
    fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill; the
        // two descriptors it returns are ours alone (closed in `drop`).
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Kick { r: fds[0], w: fds[1] })
    }

    fn kick(&self) {
        // SAFETY: writes one byte from a valid one-byte buffer to our own
        // pipe, open until `drop`; a full pipe (EAGAIN) already holds a
        // kick, which is all we need.
        unsafe { libc::write(self.w, [1u8].as_ptr().cast(), 1) };
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads at most `buf.len()` bytes into a valid local buffer
        // from our own pipe, which is non-blocking: the loop ends at EAGAIN.
        while unsafe { libc::read(self.r, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

#[cfg(not(all(test, loom)))]
impl Drop for Kick {
    fn drop(&mut self) {
        // SAFETY: both descriptors were opened by `new`, are ours alone and
        // are closed only here, once.
        unsafe {
            libc::close(self.r);
            libc::close(self.w);
        }
    }
}

#[cfg(all(test, loom))]
impl Kick {
    fn new() -> io::Result<Self> {
        Ok(Kick { kicked: Mutex::new(false), cv: Condvar::new() })
    }

    fn kick(&self) {
        *lock(&self.kicked) = true;
        self.cv.notify_all();
    }

    /// Block until kicked (a poll on a descriptor that never has data).
    fn wait(&self) {
        let mut k = lock(&self.kicked);
        while !*k {
            k = self.cv.wait(k).unwrap_or_else(|e| e.into_inner());
        }
        *k = false;
    }
}

impl Role {
    /// A role held by nobody, with its kick pipe.
    pub fn new() -> io::Result<Self> {
        Ok(Role {
            state: Mutex::new(State {
                holder: Holder::Nobody,
                users_waiting: 0,
                released_at: now(),
                receiver_now: false,
                closed: false,
            }),
            cv: Condvar::new(),
            kick: Kick::new()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn wait_until<'a>(&self, g: MutexGuard<'a, State>, until: Instant) -> MutexGuard<'a, State> {
        let left = until.saturating_duration_since(now());
        self.cv.wait_timeout(g, left).unwrap_or_else(|e| e.into_inner()).0
    }

    fn kick(&self) {
        self.kick.kick();
    }

    /// Who holds the role now.
    pub fn holder(&self) -> Holder {
        self.lock().holder
    }

    /// True once [`Role::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Block until `fd` is readable, the holder is kicked, or `timeout`
    /// passes (None: no limit). `EINTR` comes back as
    /// [`io::ErrorKind::Interrupted`].
    #[cfg(not(all(test, loom)))]
    pub fn poll(&self, fd: RawFd, timeout: Option<Duration>) -> io::Result<Ready> {
        let mut p = [
            libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.kick.r, events: libc::POLLIN, revents: 0 },
        ];
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: `p` is a valid array of two pollfds, alive and not
        // otherwise borrowed for the whole call, and 2 is its length.
        let r = unsafe { libc::poll(p.as_mut_ptr(), 2, ms) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if p[1].revents != 0 {
            self.kick.drain();
            return Ok(Ready::Kick);
        }
        if p[0].revents != 0 {
            return Ok(Ready::Data);
        }
        Ok(Ready::Timeout)
    }

    /// Under loom: block until the holder is kicked (a poll on a descriptor
    /// that never has data).
    #[cfg(all(test, loom))]
    pub fn poll_kick(&self) -> Ready {
        self.kick.wait();
        Ready::Kick
    }

    /// Receiver thread: block until it holds the role (true), or until
    /// `until` (false). It takes a free role at once when a waiting thread
    /// handed it over, else only after `grace` without anyone wanting it.
    pub fn receiver_acquire(&self, grace: Duration, until: Instant) -> bool {
        let mut g = self.lock();
        loop {
            if g.holder == Holder::Receiver {
                return true;
            }
            let free = g.holder == Holder::Nobody;
            let idle_for = now().saturating_duration_since(g.released_at);
            if free && (g.receiver_now || (g.users_waiting == 0 && idle_for >= grace)) {
                g.holder = Holder::Receiver;
                g.receiver_now = false;
                return true;
            }
            let t = now();
            if t >= until {
                return false;
            }
            let next = if free && g.users_waiting == 0 { t + (grace - idle_for) } else { t + grace };
            g = self.wait_until(g, next.min(until));
        }
    }

    /// Receiver thread: give the role up if a waiting thread wants it.
    pub fn receiver_yield_if_wanted(&self) -> bool {
        let mut g = self.lock();
        if g.holder == Holder::Receiver && g.users_waiting > 0 && !g.closed {
            g.holder = Holder::Nobody;
            g.released_at = now();
            self.cv.notify_all();
            return true;
        }
        false
    }

    /// Waiting thread `me`: block until it holds the role, `ready()` is
    /// true (checked under the role's lock, so a [`Role::poke`] after the
    /// condition became true cannot be missed), or `until`.
    pub fn user_acquire(&self, me: u64, ready: &dyn Fn() -> bool, until: Instant) -> Acquire {
        let mut g = self.lock();
        if g.holder == Holder::User(me) {
            return Acquire::Got;
        }
        g.users_waiting += 1;
        let mut kicked = false;
        let outcome = loop {
            if ready() {
                break Acquire::Ready;
            }
            if g.closed || g.receiver_now {
                break Acquire::Refused;
            }
            if g.holder == Holder::Nobody {
                g.holder = Holder::User(me);
                break Acquire::Got;
            }
            if g.holder == Holder::Receiver && !kicked {
                self.kick();
                kicked = true;
            }
            if now() >= until {
                break Acquire::Timeout;
            }
            g = self.wait_until(g, until);
        };
        g.users_waiting -= 1;
        outcome
    }

    /// Give the role up if `who` holds it; `to_receiver`: the receiver
    /// thread takes it next, at once (a frame only it may dispatch waits in
    /// the buffer, or the stream ended).
    pub fn release(&self, who: Holder, to_receiver: bool) {
        let mut g = self.lock();
        if g.holder != who {
            return;
        }
        g.holder = Holder::Nobody;
        g.released_at = now();
        if to_receiver {
            g.receiver_now = true;
        }
        // A receiver blocked behind this holder is not woken by a plain
        // release: it would only go back to sleep for the grace period,
        // which its timed wait measures anyway (and a wake-up per direct
        // read is what the direct read exists to save).
        if to_receiver || g.users_waiting > 0 {
            self.cv.notify_all();
        }
    }

    /// Wake whoever waits for the role, and kick a waiting thread that
    /// holds it out of its `poll` (its condition may have become true).
    pub fn poke(&self) {
        let g = self.lock();
        self.cv.notify_all();
        if matches!(g.holder, Holder::User(_)) {
            self.kick();
        }
    }

    /// The receiver has finished: nobody takes the role any more.
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        self.cv.notify_all();
        self.kick();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    const GRACE: Duration = Duration::from_millis(20);

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn a_waiting_thread_takes_a_free_role_and_the_receiver_waits_out_the_grace() {
        let role = Role::new().unwrap();
        assert_eq!(role.user_acquire(1, &|| false, soon()), Acquire::Got);
        assert_eq!(role.holder(), Holder::User(1));
        // held by a user: the receiver cannot take it
        assert!(!role.receiver_acquire(GRACE, Instant::now() + GRACE));
        role.release(Holder::User(1), false);
        let t0 = Instant::now();
        assert!(role.receiver_acquire(GRACE, soon()));
        assert!(t0.elapsed() >= GRACE / 2, "took the role back without a grace period");
        assert_eq!(role.holder(), Holder::Receiver);
    }

    #[test]
    fn handing_over_gives_the_receiver_the_role_at_once_and_refuses_users() {
        let role = Role::new().unwrap();
        assert_eq!(role.user_acquire(7, &|| false, soon()), Acquire::Got);
        role.release(Holder::User(7), true);
        assert_eq!(role.user_acquire(8, &|| false, soon()), Acquire::Refused);
        let t0 = Instant::now();
        assert!(role.receiver_acquire(Duration::from_secs(60), soon()));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_waiting_thread_kicks_the_receiver_out_of_poll() {
        let role = Arc::new(Role::new().unwrap());
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: a valid array for pipe to fill.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        assert!(role.receiver_acquire(Duration::ZERO, soon()));
        let receiver = {
            let role = role.clone();
            thread::spawn(move || {
                // no data ever comes: only a kick ends the poll
                assert_eq!(role.poll(r, None).unwrap(), Ready::Kick);
                assert!(role.receiver_yield_if_wanted());
            })
        };
        assert_eq!(role.user_acquire(2, &|| false, soon()), Acquire::Got);
        receiver.join().unwrap();
        // the holder sees data and times out as usual
        // SAFETY: one byte from a valid buffer into our own pipe.
        assert_eq!(unsafe { libc::write(w, [0u8].as_ptr().cast(), 1) }, 1);
        assert_eq!(role.poll(r, Some(Duration::from_secs(5))).unwrap(), Ready::Data);
        // SAFETY: closing the pipe this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn a_poke_wakes_a_thread_waiting_for_the_role() {
        let role = Arc::new(Role::new().unwrap());
        assert_eq!(role.user_acquire(1, &|| false, soon()), Acquire::Got);
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (role, flag) = (role.clone(), flag.clone());
            thread::spawn(move || {
                role.user_acquire(2, &|| flag.load(std::sync::atomic::Ordering::SeqCst), soon())
            })
        };
        thread::sleep(Duration::from_millis(20));
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        role.poke();
        assert_eq!(waiter.join().unwrap(), Acquire::Ready);
        assert_eq!(role.holder(), Holder::User(1));
    }

    #[test]
    fn a_closed_role_refuses_everyone_and_times_out_cleanly() {
        let role = Role::new().unwrap();
        assert!(role.receiver_acquire(Duration::ZERO, soon()));
        let t0 = Instant::now();
        let until = t0 + Duration::from_millis(30);
        assert_eq!(role.user_acquire(3, &|| false, until), Acquire::Timeout);
        assert!(t0.elapsed() >= Duration::from_millis(25));
        role.close();
        assert_eq!(role.user_acquire(3, &|| false, soon()), Acquire::Refused);
        assert!(role.is_closed());
    }
}
