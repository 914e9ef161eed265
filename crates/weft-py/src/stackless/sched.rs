//! One tasklet scheduler per OS thread: the ring of runnable tasklets, the
//! main tasklet, the running one, and the mailbox through which other
//! threads make this thread's tasklets runnable.
//!
//! The scheduler state lives in a thread-local `RefCell` and is borrowed only
//! inside short closures that never call Python code and never switch: a
//! switch moves to another coroutine of the same thread, which borrows the
//! state again. Whatever a closure takes out that may run Python code when
//! dropped (a tasklet reference) is handed back and dropped outside.
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use weft_sched::Ring;

use crate::event::Inner as Wakeup;
use crate::greenlet::switch::{stage_passing, switch_staged, switch_to_coroutine};
use crate::greenlet::{thread_data, Greenlet, Passing, ThreadData};

use super::tasklet::{Place, Tasklet};
use super::watchdog::Watch;
use super::{release, Light};

/// The part of a thread's scheduler that other threads reach: its mailbox.
pub(crate) struct Shared {
    /// `threading.get_ident()` of the thread.
    pub thread_id: u64,
    /// False once the thread has exited.
    pub alive: AtomicBool,
    /// Tasklets another thread made runnable here, in the order it did.
    inbox: Mutex<Vec<(Py<Tasklet>, Option<u64>)>>,
    has_mail: AtomicBool,
    /// Set when mail arrives; the idle thread waits on it.
    wakeup: Arc<Wakeup>,
    /// Its tasklets blocked on channels now.
    pub blocked: std::sync::atomic::AtomicUsize,
    /// Its tasklets parked on other events (gateway waits) now.
    pub parked: std::sync::atomic::AtomicUsize,
    /// The running tasklet there (for `is_current` asked from elsewhere).
    pub current: std::sync::atomic::AtomicPtr<pyo3::ffi::PyObject>,
    /// Its main tasklet (held by its scheduler for the thread's life, and
    /// leaked, never freed, once the thread has exited).
    main: std::sync::atomic::AtomicPtr<pyo3::ffi::PyObject>,
    /// Its runnable tasklets, as of its last switch or idle wait.
    runcount: std::sync::atomic::AtomicUsize,
    /// An eventfd, made the first time the thread idles in `poll` (see
    /// `io::idle_poll`): mail written to it wakes that poll.
    poll_wake: std::sync::OnceLock<std::os::fd::OwnedFd>,
    /// The thread idles in `poll` now: mail must write `poll_wake`.
    polling: AtomicBool,
}

impl Shared {
    /// Hands `t` to this thread's scheduler and wakes it if it idles.
    pub fn post(&self, t: Py<Tasklet>) {
        self.post_token(t, None);
    }

    /// `post` for a parked tasklet: taken only while it is still parked
    /// with this token. Touches no refcount (callable without the GIL).
    pub fn post_token(&self, t: Py<Tasklet>, token: Option<u64>) {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).push((t, token));
        self.has_mail.store(true, Ordering::SeqCst);
        self.wakeup.set();
        if self.polling.load(Ordering::SeqCst) {
            if let Some(fd) = self.poll_wake.get() {
                let one: u64 = 1;
                // SAFETY: `fd` is this mailbox's open eventfd (owned by it,
                // closed only when it is dropped); the buffer is 8 valid
                // bytes. A failed write (the counter is full) leaves it
                // readable, which is all the poller needs.
                unsafe { libc::write(std::os::fd::AsRawFd::as_raw_fd(fd), (&one as *const u64).cast(), 8) };
            }
        }
    }

    /// Mail is waiting.
    pub(crate) fn has_mail(&self) -> bool {
        self.has_mail.load(Ordering::SeqCst)
    }

    /// The descriptor that becomes readable when mail arrives while
    /// `polling` is set; made on first use.
    pub(crate) fn poll_wake_fd(&self) -> PyResult<std::os::fd::RawFd> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        if let Some(fd) = self.poll_wake.get() {
            return Ok(fd.as_raw_fd());
        }
        // SAFETY: eventfd has no memory preconditions; a non-negative result
        // is a new descriptor that we own from here on.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `raw` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Only this thread makes it (the poller), so the set never loses.
        let _ = self.poll_wake.set(fd);
        Ok(self.poll_wake.get().map_or(raw, |f| f.as_raw_fd()))
    }

    pub(crate) fn set_polling(&self, on: bool) {
        self.polling.store(on, Ordering::SeqCst);
    }

    /// Empties the wake-up descriptor's counter after a poll.
    pub(crate) fn drain_poll_wake(&self) {
        if let Some(fd) = self.poll_wake.get() {
            let mut buf: u64 = 0;
            // SAFETY: an open, non-blocking eventfd of ours; 8 valid bytes
            // to read into. EAGAIN (nothing to drain) is fine.
            unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(fd), (&mut buf as *mut u64).cast(), 8) };
        }
    }
}

/// Every live scheduler's mailbox, for `getthreads()` and cross-thread sends.
static THREADS: Mutex<Vec<std::sync::Weak<Shared>>> = Mutex::new(Vec::new());

pub(crate) struct Sched {
    pub ring: Ring<Py<Tasklet>>,
    pub main: Py<Tasklet>,
    pub current: Py<Tasklet>,
    pub shared: Arc<Shared>,
    /// A tasklet that has just finished, and the one a switch came from:
    /// released by the tasklet that runs next, once the stack has moved (a
    /// paused tasklet nobody references is then collected, and killed).
    pub dying: Option<Py<Tasklet>>,
    pub leaving: Option<Py<Tasklet>>,
    /// References taken out while borrowed, released after the borrow.
    pub stale: Vec<Py<Tasklet>>,
    /// Coroutines of collected suspended tasklets, to kill (`kill_doomed`).
    pub doomed: Vec<Py<Greenlet>>,
    /// Parked tasklets with a deadline: (when, tasklet, park token).
    pub sleepers: Vec<(std::time::Instant, Py<Tasklet>, u64)>,
    /// Parked tasklets waiting for a file descriptor (see `io`).
    pub fd_waits: Vec<super::io::FdWait>,
    /// How many of the parked tasklets wait for a descriptor to become
    /// readable (a tasklet exec model's gateway receivers): like tasklets
    /// blocked on channels, they wait for someone else (the other end), so
    /// `run()` waits for them only with `threadblock`.
    pub listening: usize,
    /// Tasklets paused in `run()`, innermost last: the ring's owner when it
    /// runs empty.
    pub watchers: Vec<Watch>,
    /// `switch_trap` level: while positive, every switch is refused.
    pub switch_trap: i64,
    /// The launcher: see `launch`.
    pub launcher: Option<Launcher>,
    /// The engine's data of this thread (valid until the thread exits).
    pub td: *mut ThreadData,
}

/// A coroutine that starts tasklets at a fixed depth of the C stack.
///
/// A coroutine starts where its starter's stack ends (weft copies stacks in
/// and out of one region). A tasklet that starts the next one from deep in
/// its own call stack (blocking or finishing) would make every next tasklet
/// start deeper, and a long chain of them would overflow the C stack. So a
/// start from more than `LAUNCH_DEPTH` bytes below the launcher goes through
/// it: one switch there, and the launcher starts the tasklet from its own
/// shallow frame.
pub(crate) struct Launcher {
    coro: Py<Greenlet>,
    /// Stack address of the launcher's loop frame.
    sp: usize,
    /// The start it is to make when next switched to.
    request: Option<(*mut pyo3::ffi::PyObject, Option<Py<PyAny>>, Passing)>,
    /// The coroutine to go back to once it has been set up.
    creator: *mut pyo3::ffi::PyObject,
}

/// Starts from deeper than this below the launcher go through it.
const LAUNCH_DEPTH: usize = 64 * 1024;

/// This thread's scheduler. When the thread ends, its tasklets can never
/// run again (their stacks were the thread's): the scheduler is marked dead
/// (channels then skip its waiters) and its references are leaked rather
/// than released without the GIL, which a thread's TLS destructor may not
/// hold.
struct Slot(RefCell<Option<Sched>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.0.get_mut().take() {
            s.shared.alive.store(false, Ordering::Release);
            std::mem::forget(s);
        }
    }
}

thread_local! {
    static SCHED: Slot = const { Slot(RefCell::new(None)) };
}

/// Runs `f` on this thread's scheduler, creating it on first use.
pub(crate) fn with<R>(py: Python<'_>, f: impl FnOnce(&mut Sched) -> R) -> PyResult<R> {
    Here::get().with(py, f)
}

/// This thread's scheduler slot, found with one thread-local access and
/// then handed down one operation (a channel's hand-off and its switch):
/// each `with` looks the thread-local up again, a `__tls_get_addr` call
/// and a state check in a shared library.
///
/// A raw pointer, so it is neither `Send` nor `Sync`: it cannot leave the
/// thread whose slot it names.
#[derive(Clone, Copy)]
pub(crate) struct Here(*const Slot);

impl Here {
    /// This thread's slot.
    #[inline]
    pub(crate) fn get() -> Here {
        SCHED.with(|s| Here(s as *const Slot))
    }

    #[inline]
    fn slot(self) -> &'static Slot {
        // SAFETY: the pointer is this thread's `SCHED` slot (`get`), and a
        // `Here` cannot reach another thread (not Send). The slot lives
        // until the thread's TLS destructors run, after its Python code has
        // ended; a `Here` lives only in the frames of one weft call of this
        // thread (those of a suspended tasklet are never resumed once the
        // thread ends). Only a shared reference is made: the `RefCell`
        // inside checks every borrow, as `SCHED.with` would.
        unsafe { &*self.0 }
    }

    /// `with`, on this slot.
    #[inline]
    pub(crate) fn with<R>(self, py: Python<'_>, f: impl FnOnce(&mut Sched) -> R) -> PyResult<R> {
        let slot = self.slot();
        {
            let mut b = slot.0.try_borrow_mut().map_err(|_| reentered())?;
            if let Some(sc) = b.as_mut() {
                return Ok(f(sc));
            }
        }
        create(py)?;
        let mut b = slot.0.try_borrow_mut().map_err(|_| reentered())?;
        Ok(f(b.as_mut().expect("created above")))
    }
}

fn reentered() -> PyErr {
    PyRuntimeError::new_err("weft.stackless: the scheduler was re-entered from a finalizer; move that code out of __del__")
}

/// `with`, for callers that know the scheduler exists (they hold a tasklet
/// of this thread that is running).
pub(crate) fn with_existing<R>(f: impl FnOnce(&mut Sched) -> R) -> R {
    SCHED.with(|s| {
        f(s.0.borrow_mut()
            .as_mut()
            .expect("a scheduler exists in this thread"))
    })
}

/// This thread's scheduler exists.
pub(crate) fn exists() -> bool {
    SCHED
        .try_with(|s| s.0.try_borrow().map(|b| b.is_some()).unwrap_or(true))
        .unwrap_or(false)
}

fn create(py: Python<'_>) -> PyResult<()> {
    let td = thread_data(py)?;
    // SAFETY: `thread_data` returns this thread's engine data, valid until
    // the thread exits and only touched by this thread with the GIL (held
    // here): reading `current` races with nothing.
    let coro = unsafe { (*td).current.clone_ref(py) };
    let shared = Arc::new(Shared {
        // SAFETY: pthread_self has no preconditions.
        thread_id: unsafe { libc::pthread_self() } as u64,
        alive: AtomicBool::new(true),
        inbox: Mutex::new(Vec::new()),
        has_mail: AtomicBool::new(false),
        wakeup: Wakeup::new(),
        current: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        blocked: std::sync::atomic::AtomicUsize::new(0),
        parked: std::sync::atomic::AtomicUsize::new(0),
        poll_wake: std::sync::OnceLock::new(),
        polling: AtomicBool::new(false),
        main: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        runcount: std::sync::atomic::AtomicUsize::new(1),
    });
    mark_thread_end(py, &shared)?;
    let main = Py::new(py, Tasklet::new_main(coro, shared.clone()))?;
    shared.main.store(main.as_ptr(), Ordering::Release);
    shared.current.store(main.as_ptr(), Ordering::Release);
    let mut ring = Ring::new();
    let key = ring.push_back(main.clone_ref(py));
    main.get().set_place(Place::Run(key));
    {
        let mut all = THREADS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&shared));
    }
    SCHED.with(|s| {
        *s.0.borrow_mut() = Some(Sched {
            ring,
            current: main.clone_ref(py),
            main,
            shared,
            dying: None,
            leaving: None,
            stale: Vec::new(),
            doomed: Vec::new(),
            sleepers: Vec::new(),
            fd_waits: Vec::new(),
            listening: 0,
            watchers: Vec::new(),
            switch_trap: 0,
            launcher: None,
            td,
        })
    });
    Ok(())
}

/// Lives in the thread state's dict: CPython clears that dict when the
/// thread's Python code is done, before `Thread.join()` returns (a TLS
/// destructor may run later), so the scheduler is known dead by then.
#[pyclass(module = "weft._weft", name = "_ThreadEnd", frozen)]
struct ThreadEndMark {
    shared: Arc<Shared>,
}

impl Drop for ThreadEndMark {
    fn drop(&mut self) {
        self.shared.alive.store(false, Ordering::Release);
    }
}

fn mark_thread_end(py: Python<'_>, shared: &Arc<Shared>) -> PyResult<()> {
    // SAFETY: GIL held; a borrowed dict of this thread state (or null).
    let d = unsafe { pyo3::ffi::PyThreadState_GetDict() };
    if d.is_null() {
        return Ok(());
    }
    // SAFETY: `d` is not null (checked above) and is the thread state's own
    // dict, which lives as long as the thread state, longer than this call
    // that holds the GIL; `from_borrowed_ptr` takes a reference of its own.
    let d = unsafe { Bound::from_borrowed_ptr(py, d) };
    d.set_item("weft.stackless.thread_end", Py::new(py, ThreadEndMark { shared: shared.clone() })?)?;
    Ok(())
}

/// Thread ids of the threads that have a scheduler.
pub(crate) fn thread_ids() -> Vec<u64> {
    let all = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .filter_map(|w| w.upgrade())
        .filter(|s| s.alive.load(Ordering::Acquire))
        .map(|s| s.thread_id)
        .collect()
}

/// The running tasklet, after checking that the running coroutine is its
/// (a greenlet switch inside a tasklet would otherwise confuse the two).
pub(crate) fn current_checked(py: Python<'_>) -> PyResult<(*mut ThreadData, Py<Tasklet>)> {
    current_here(py, Here::get())
}

/// `current_checked` on the slot `here` (this thread's).
pub(crate) fn current_here(py: Python<'_>, here: Here) -> PyResult<(*mut ThreadData, Py<Tasklet>)> {
    let (td, cur, doomed) = here.with(py, |s| (s.td, s.current.clone_ref(py), !s.doomed.is_empty()))?;
    // SAFETY: `s.td` is this thread's engine data, stored when this
    // thread's scheduler was made (valid until the thread exits; only this
    // thread touches it, with the GIL, held here).
    let running = unsafe { (*td).current.as_ptr() };
    if cur.get().coro_ptr() != running {
        return Err(PyRuntimeError::new_err(
            "weft.stackless: this code runs in a greenlet that is not the current tasklet's; \
             switch back to the tasklet's own greenlet before using tasklets or channels",
        ));
    }
    if doomed {
        // A consistent point (the running coroutine is the current
        // tasklet's): the collected tasklets' kills run now.
        kill_doomed(py);
    }
    Ok((td, cur))
}

/// This thread's engine data and running tasklet, for callers that checked
/// `running_is_current` (no collected tasklets are killed here: the caller
/// may hold a gateway writer's turn, which a kill's cleanup could want).
pub(crate) fn current_plain(py: Python<'_>) -> PyResult<(*mut ThreadData, Py<Tasklet>)> {
    with(py, |s| (s.td, s.current.clone_ref(py)))
}

/// True if the running coroutine is this thread's current tasklet (as
/// `current_checked` requires), without `current_checked`'s side effects.
pub(crate) fn running_is_current(py: Python<'_>) -> bool {
    with(py, |s| {
        // SAFETY: as in `current_checked`: this thread's engine data.
        let running = unsafe { (*s.td).current.as_ptr() };
        s.current.get().coro_ptr() == running
    })
    .unwrap_or(false)
}

/// The running tasklet `me` leaves the ring to wait for a wake-up carrying
/// the returned token (or for `deadline`); `select`, if given, is the select
/// it waits in. The caller registers the wake-ups and switches away.
pub(crate) fn park_current(py: Python<'_>, me: &Py<Tasklet>, deadline: Option<std::time::Instant>, select: Option<Arc<super::select::Select>>) -> PyResult<u64> {
    let t = me.get();
    let token = {
        let mut st = t.state();
        st.park_token += 1;
        st.select = select;
        st.park_token
    };
    let gone = with(py, |s| {
        let gone = unlink(s, t);
        t.set_place(Place::Parked(token));
        if let Some(d) = deadline {
            s.sleepers.push((d, me.clone_ref(py), token));
        }
        gone
    })?;
    drop(gone);
    Ok(token)
}

/// The parked tasklet `me` (parking `token`) gives way until it is runnable
/// again: to the next tasklet, or, when nothing else can run, to the idle
/// wait (mail, deadlines, descriptors). Back running, it is linked into the
/// ring again. `deadlock` is the error if nothing could ever wake it.
pub(crate) fn wait_parked(py: Python<'_>, td: *mut ThreadData, me: &Py<Tasklet>, token: u64, deadlock: &'static str) -> PyResult<()> {
    let r = loop {
        let next = with(py, |s| pick_next(s, py))?;
        if next.as_ptr() != me.as_ptr() {
            let r = switch_to(py, td, next, None).map_err(|e| *e);
            if r.is_err() || me.get().place() != Place::Parked(token) {
                break r.map(|v| release(py, v));
            }
            continue;
        }
        release(py, next);
        if me.get().place() != Place::Parked(token) {
            break Ok(());
        }
        match idle_wait(py) {
            Ok(true) => {}
            Ok(false) => break Err(PyRuntimeError::new_err(deadlock)),
            Err(e) => break Err(e),
        }
        if me.get().place() != Place::Parked(token) {
            break Ok(());
        }
    };
    unpark(py, me)?;
    r
}

/// A wake-up for the parking `token` of `me`: posts it to its thread (no
/// refcount touched, so any thread may call it, with or without the GIL).
pub(crate) fn waker(py: Python<'_>, me: &Py<Tasklet>, token: u64) -> crate::event::Waker {
    let shared = me.get().thread();
    let r = me.clone_ref(py);
    Box::new(move || shared.post_token(r, Some(token)))
}

/// A parked tasklet that runs again (woken, or thrown into) is linked back
/// into the ring as its head.
pub(crate) fn unpark(py: Python<'_>, me: &Py<Tasklet>) -> PyResult<()> {
    if matches!(me.get().place(), Place::Parked(_)) {
        with(py, |s| make_head(s, me, me.get(), false))?;
    }
    Ok(())
}

/// Queues the coroutine of a collected, suspended tasklet of `thread` for
/// its kill; false if it is not this thread's (the caller drops it).
pub(crate) fn doom(thread: &Arc<Shared>, coro: &Py<Greenlet>) -> bool {
    SCHED
        .try_with(|s| match s.0.try_borrow_mut() {
            Ok(mut b) => match b.as_mut() {
                Some(sc) if Arc::ptr_eq(&sc.shared, thread) => {
                    sc.doomed.push(coro.clone_ref(unsafe_py()));
                    true
                }
                _ => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// Kills the coroutines of collected tasklets (see `Tasklet`'s Drop): each
/// runs its finally blocks and comes back here (greenlet's rules).
pub(crate) fn kill_doomed(py: Python<'_>) {
    loop {
        let Ok(Some(coro)) = with(py, |s| s.doomed.pop()) else { return };
        crate::greenlet::switch::kill_with(py, coro.bind(py), super::exits::tasklet_exit(py, ()));
        drop(coro);
    }
}

/// Moves tasklets other threads made runnable here into the ring.
pub(crate) fn take_mail(s: &mut Sched) {
    // Looked at first: the swap is a locked write, and this runs at every
    // pick of the next tasklet, where there is rarely mail.
    if !s.shared.has_mail.load(Ordering::Acquire) || !s.shared.has_mail.swap(false, Ordering::AcqRel) {
        return;
    }
    let mail = std::mem::take(&mut *s.shared.inbox.lock().unwrap_or_else(|e| e.into_inner()));
    for (t, token) in mail {
        let wanted = match token {
            None => Place::Mail,
            Some(k) => Place::Parked(k),
        };
        if t.get().place() == wanted {
            insert_back(s, t);
        } else {
            // A stale wake-up (timed out, killed, woken already): dropped
            // outside the borrow by the caller's next release.
            s.stale.push(t);
        }
    }
}

/// Wakes parked tasklets whose deadline has passed; returns the nearest
/// deadline still pending.
pub(crate) fn wake_sleepers(s: &mut Sched) -> Option<std::time::Instant> {
    if s.sleepers.is_empty() {
        return None;
    }
    let now = std::time::Instant::now();
    let mut nearest = None;
    let mut keep = Vec::with_capacity(s.sleepers.len());
    for (when, t, token) in std::mem::take(&mut s.sleepers) {
        if t.get().place() != Place::Parked(token) {
            s.stale.push(t);
        } else if when <= now {
            insert_back(s, t);
        } else {
            nearest = Some(nearest.map_or(when, |n: std::time::Instant| n.min(when)));
            keep.push((when, t, token));
        }
    }
    s.sleepers = keep;
    nearest
}

/// Appends `t` at the end of the round.
pub(crate) fn insert_back(s: &mut Sched, t: Py<Tasklet>) {
    let key = s.ring.push_back(t);
    let t = s.ring.get(key).expect("just linked");
    t.get().set_place(Place::Run(key));
}

/// Takes `t` out of the ring if it is in it.
pub(crate) fn unlink(s: &mut Sched, t: &Tasklet) -> Option<Py<Tasklet>> {
    if let Place::Run(k) = t.place() {
        t.set_place(Place::Nowhere);
        return s.ring.remove(k);
    }
    None
}

/// Makes `t` the head of the ring, linking it right before `anchor` (the
/// end of the round when `anchor` is the head) if it is not in the ring.
/// With `after` it is linked right after `anchor` instead.
pub(crate) fn make_head(s: &mut Sched, t: &Py<Tasklet>, anchor: &Tasklet, after: bool) {
    let key = match t.get().place() {
        Place::Run(k) => k,
        _ => {
            let k = match anchor.place() {
                Place::Run(a) if after => s.ring.insert_after(a, t.clone_ref(unsafe_py())),
                Place::Run(a) => s.ring.insert_before(a, t.clone_ref(unsafe_py())),
                _ => s.ring.push_back(t.clone_ref(unsafe_py())),
            };
            t.get().set_place(Place::Run(k));
            k
        }
    };
    s.ring.set_head(key);
}

fn unsafe_py() -> Python<'static> {
    // SAFETY: scheduler state is only touched with the GIL held (every entry
    // point is a Python call into weft).
    unsafe { Python::assume_attached() }
}

/// Who runs when the running tasklet stops running: the head of the ring,
/// else the innermost tasklet paused in `run()`, else the main tasklet.
pub(crate) fn pick_next(s: &mut Sched, py: Python<'_>) -> Py<Tasklet> {
    // Each looked at here first: this runs at every switch, and the calls
    // are rarely needed.
    if s.shared.has_mail.load(Ordering::Relaxed) {
        take_mail(s);
    }
    if !s.sleepers.is_empty() {
        wake_sleepers(s);
    }
    if !s.fd_waits.is_empty() {
        super::io::poll_ready(s);
    }
    if let Some(w) = s.watchers.last_mut() {
        if w.soft_exit_due() {
            return w.owner.clone_ref(py);
        }
    }
    if let Some(h) = s.ring.head_value() {
        return h.clone_ref(py);
    }
    match s.watchers.last() {
        Some(w) => w.owner.clone_ref(py),
        None => s.main.clone_ref(py),
    }
}

/// Switches from the running tasklet to `target` (of this thread, alive,
/// not the running one), raising `raise` in it if given. Returns what the
/// switch back carries: `Ok(None)`, or an exception thrown into this tasklet.
///
/// This frame stays on the suspended tasklet's C stack and is copied with it
/// at every switch, so it holds only small values (the error boxed, see
/// `Light`), and the work before the switch is done in `prepare_switch`,
/// whose frame is gone by then.
pub(crate) fn switch_to(
    py: Python<'_>,
    td: *mut ThreadData,
    target: Py<Tasklet>,
    raise: Option<Box<PyErr>>,
) -> Light<Py<PyAny>> {
    switch_here(py, Here::get(), td, target, raise)
}

/// `switch_to` on the slot `here` (this thread's).
pub(crate) fn switch_here(
    py: Python<'_>,
    here: Here,
    td: *mut ThreadData,
    target: Py<Tasklet>,
    raise: Option<Box<PyErr>>,
) -> Light<Py<PyAny>> {
    let (coro, run) = prepare_switch(py, here, td, target, raise)?;
    // SAFETY: the GIL is held, `td` is this thread's data, and `coro` is the
    // target tasklet's coroutine, checked by `prepare_to_run` to be of this
    // thread and live (or the launcher, which starts it); the target is kept
    // alive by `current` until it runs, the launcher by the scheduler; the
    // value in flight was staged by `prepare_switch`.
    let r = unsafe { switch_staged(py, td, coro, run) };
    // Back on this tasklet's stack, of the same thread: `here` is still ours.
    release_after_switch_here(py, here);
    r
}

/// Everything `switch_to` does before the stack moves: hooks, the switch
/// trap, the target's readiness, the launch site, making it current, and
/// staging the value in flight.
#[inline(never)]
fn prepare_switch(
    py: Python<'_>,
    here: Here,
    td: *mut ThreadData,
    target: Py<Tasklet>,
    raise: Option<Box<PyErr>>,
) -> Light<(*mut pyo3::ffi::PyObject, Option<Py<PyAny>>)> {
    if super::callbacks::schedule_hook_set() || super::tracing::in_use() {
        switch_hooks(py, &target)?;
    }
    if here.with(py, |s| s.switch_trap > 0)? {
        return Err(Box::new(PyRuntimeError::new_err("switch_trap: a tasklet switch was attempted while stackless.switch_trap is set")));
    }
    let (coro, run, passing) = match (raise, target.get().started_coro()) {
        // The common case (what prepare_to_run returns for it), without
        // moving the value in flight through its result.
        (None, Some(c)) => (c, None, Passing::Empty),
        (raise, _) => {
            let passing = match raise {
                None => Passing::Empty,
                Some(e) => Passing::Raise(*e),
            };
            let (coro, run, passing) = target.get().prepare_to_run(py, td, passing)?;
            if run.is_some() { launch_site(py, td, coro, run, passing)? } else { (coro, run, passing) }
        }
    };
    let stale = here.with(py, |s| {
        if let Some(w) = s.watchers.last_mut() {
            w.arrived();
        }
        s.shared.current.store(target.as_ptr(), Ordering::Relaxed);
        s.shared.runcount.store(s.ring.len().max(1), Ordering::Relaxed);
        let me = std::mem::replace(&mut s.current, target);
        s.leaving.replace(me)
    })?;
    if let Some(t) = stale {
        release(py, t);
    }
    // SAFETY: `td` is this thread's data (the caller's contract).
    unsafe { stage_passing(td, passing) };
    Ok((coro, run))
}

/// The schedule callback and per-tasklet tracing, when either is in use.
#[inline(never)]
fn switch_hooks(py: Python<'_>, target: &Py<Tasklet>) -> PyResult<()> {
    let me = with(py, |s| s.current.clone_ref(py))?;
    if super::callbacks::schedule_hook_set() {
        super::callbacks::call_schedule_hook(py, me.bind(py).as_any(), target.bind(py).as_any())?;
    }
    if super::tracing::in_use() {
        super::tracing::on_switch(py, me.get(), target.get())?;
    }
    Ok(())
}

fn stack_here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Where a switch to `coro` should go: to it, or, for a start from deep in
/// the C stack, to the launcher carrying the start as its request (see
/// `Launcher`). Creates the launcher at the first start in this thread.
pub(crate) fn launch_site(
    py: Python<'_>,
    td: *mut ThreadData,
    coro: *mut pyo3::ffi::PyObject,
    run: Option<Py<PyAny>>,
    passing: Passing,
) -> PyResult<(*mut pyo3::ffi::PyObject, Option<Py<PyAny>>, Passing)> {
    if run.is_none() {
        return Ok((coro, run, passing));
    }
    if with(py, |s| s.launcher.is_none())? {
        make_launcher(py, td)?;
    }
    let here = stack_here();
    with(py, |s| {
        let l = s.launcher.as_mut().expect("made above");
        if l.sp.saturating_sub(here) <= LAUNCH_DEPTH {
            return (coro, run, passing);
        }
        l.request = Some((coro, run, passing));
        (l.coro.as_ptr(), None, Passing::Empty)
    })
}

fn make_launcher(py: Python<'_>, td: *mut ThreadData) -> PyResult<()> {
    let coro = Greenlet::new_for_scheduler(py, td)?;
    // It never finishes; should it be killed, greenlet's rules take it back.
    coro.get().coro().finish.set(crate::greenlet::Finish::Parent);
    let run = super::launcher_loop_fn(py)?;
    // SAFETY: `td` is this thread's engine data (from the scheduler, as in
    // `current_checked`), read with the GIL held.
    let creator = unsafe { (*td).current.as_ptr() };
    let ptr = coro.as_ptr();
    with(py, |s| s.launcher = Some(Launcher { coro, sp: 0, request: None, creator }))?;
    // SAFETY: GIL held; `ptr` is the new, unstarted launcher, kept alive by
    // the scheduler; it switches straight back here once set up.
    unsafe { switch_to_coroutine(py, td, ptr, Passing::Args(pyo3::types::PyTuple::empty(py).unbind(), None), Some(run)) }?;
    Ok(())
}

/// The launcher's body: records its depth, goes back to its creator, then
/// makes each start it is asked for from this frame.
pub(crate) fn launcher_loop(py: Python<'_>) -> PyResult<()> {
    let td = thread_data(py)?;
    let back = with(py, |s| {
        let l = s.launcher.as_mut().expect("the launcher runs with the scheduler");
        l.sp = stack_here();
        l.creator
    })?;
    // SAFETY: GIL held; `back` is the coroutine that made us, suspended in
    // `make_launcher` and alive (it is running code that holds it).
    unsafe { switch_to_coroutine(py, td, back, Passing::Empty, None) }?;
    loop {
        let (coro, run, passing) =
            with(py, |s| s.launcher.as_mut().and_then(|l| l.request.take()))?.expect("the launcher was resumed without a start to make");
        // SAFETY: as in `switch_to`: the request was made there (or by a
        // finishing tasklet) for a live, unstarted tasklet coroutine.
        unsafe { switch_to_coroutine(py, td, coro, passing, run) }?;
    }
}

/// What the tasklet that ran before us left to release (see `dying`).
#[inline(never)]
pub(crate) fn release_after_switch(py: Python<'_>) {
    release_after_switch_here(py, Here::get())
}

/// `release_after_switch` on the slot `here` (this thread's).
#[inline(never)]
fn release_after_switch_here(py: Python<'_>, here: Here) {
    // The common case: only the tasklet we came from to release.
    let only_leaving = here.with(py, |s| {
        if s.dying.is_none() && s.stale.is_empty() {
            Ok(s.leaving.take())
        } else {
            Err(())
        }
    });
    match only_leaving {
        Ok(Ok(leaving)) => {
            if let Some(t) = leaving {
                release(py, t);
            }
            return;
        }
        Ok(Err(())) => {}
        Err(_) => return,
    }
    if let Ok((dying, leaving, stale)) = here.with(py, |s| (s.dying.take(), s.leaving.take(), (!s.stale.is_empty()).then(|| std::mem::take(&mut s.stale)))) {
        for t in dying.into_iter().chain(leaving) {
            release(py, t);
        }
        drop(stale);
    }
}

/// True if another Python thread is alive that may still wake this one.
///
/// Counted from the interpreter's thread states, not `threading`: a
/// gateway's receiver started with `_thread` (as a worker's is) is not in
/// `threading.active_count()`, yet it is what sets a gateway waiter's event.
pub(crate) fn others_may_wake(_py: Python<'_>) -> PyResult<bool> {
    // SAFETY: the GIL is held (`_py`), under which the interpreter's list of
    // thread states does not change; walking it with these two public
    // functions is what CPython documents them for. We only count entries.
    unsafe {
        let interp = pyo3::ffi::PyInterpreterState_Get();
        let mut ts = pyo3::ffi::PyInterpreterState_ThreadHead(interp);
        let mut n = 0;
        while !ts.is_null() {
            n += 1;
            if n > 1 {
                return Ok(true);
            }
            ts = pyo3::ffi::PyThreadState_Next(ts);
        }
    }
    Ok(false)
}

/// True while a tasklet of this thread waits on a channel (another thread
/// may still wake it).
pub(crate) fn has_blocked(py: Python<'_>) -> PyResult<bool> {
    with(py, |s| s.shared.blocked.load(Ordering::Relaxed) > 0)
}

/// True while a tasklet of this thread is parked on a gateway event: `run()`
/// waits for it (the event is set by another thread) instead of returning.
pub(crate) fn has_parked(py: Python<'_>) -> PyResult<bool> {
    with(py, |s| s.shared.parked.load(Ordering::Relaxed) > 0)
}

/// What `run()` waits for once nothing is runnable: tasklets parked on
/// wake-ups from elsewhere (not the listening ones), and with `threadblock`
/// also the blocked and listening ones.
pub(crate) fn run_should_wait(py: Python<'_>, threadblock: bool) -> PyResult<bool> {
    with(py, |s| {
        let parked = s.shared.parked.load(Ordering::Relaxed);
        parked > s.listening
            || (threadblock && (s.listening > 0 || s.shared.blocked.load(Ordering::Relaxed) > 0))
    })
}

/// Waits (GIL released) until mail arrives or a slice passes. Returns
/// false at once if no other thread could ever send mail.
pub(crate) fn idle_wait(py: Python<'_>) -> PyResult<bool> {
    let wake = with(py, |s| {
        take_mail(s);
        let mut nearest = wake_sleepers(s);
        super::io::poll_ready(s);
        if s.ring.is_empty() {
            s.shared.wakeup.clear();
            // Re-checked after clearing: mail posted before the clear is seen.
            take_mail(s);
            nearest = wake_sleepers(s);
        }
        s.shared.runcount.store(s.ring.len().max(1), Ordering::Relaxed);
        let fds = if s.ring.is_empty() { super::io::idle_fds(s) } else { None };
        (!s.ring.is_empty(), s.shared.wakeup.clone(), nearest, !s.sleepers.is_empty(), fds, s.shared.clone())
    })?;
    release_after_switch(py);
    if wake.0 {
        return Ok(true);
    }
    // A parked tasklet with a deadline wakes this thread itself, and one
    // waiting on a descriptor is woken by whatever is at its other end
    // (another process, a remote host), as a thread blocked in a read is.
    if !wake.3 && wake.4.is_none() && !others_may_wake(py)? {
        // A signal sent meanwhile (Ctrl-C from a thread that has exited
        // since) is raised rather than the deadlock.
        py.check_signals()?;
        return Ok(false);
    }
    let slice = match wake.2 {
        Some(d) => d.saturating_duration_since(std::time::Instant::now()).as_secs_f64().min(0.05),
        None => 0.05,
    };
    match wake.4 {
        // Tasklets wait on descriptors: poll them and the mailbox at once.
        Some(fds) => super::io::idle_poll(py, &wake.5, fds, slice)?,
        None => {
            crate::event::wait(&wake.1, py, Some(slice))?;
        }
    }
    with(py, |s| {
        take_mail(s);
        wake_sleepers(s);
    })?;
    Ok(true)
}

/// The mailbox of the thread with `threading.get_ident()` `id`.
pub(crate) fn shared_of(id: u64) -> Option<Arc<Shared>> {
    let all = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .filter_map(|w| w.upgrade())
        .find(|s| s.thread_id == id && s.alive.load(Ordering::Acquire))
}

/// Another thread's runnable count is not reachable from here.
/// `(main, current, runcount)` of the scheduler of another thread, or None
/// if no live thread with that id runs one.
pub(crate) fn thread_info_of(py: Python<'_>, id: u64) -> Option<(Py<PyAny>, Py<PyAny>, usize)> {
    let shared = shared_of(id)?;
    if !shared.alive.load(Ordering::Acquire) {
        return None;
    }
    let (main, cur) = (shared.main.load(Ordering::Acquire), shared.current.load(Ordering::Acquire));
    if main.is_null() || cur.is_null() {
        return None;
    }
    // SAFETY: both are tasklets that thread's scheduler holds a strong
    // reference to for as long as they are published here: `main` for the
    // thread's life, `current` from the moment it is stored (the previous
    // one is released only after, by that thread, under the GIL, which we
    // hold, so it cannot run meanwhile); a dead thread's are leaked, never
    // freed. Taking new references to live objects under the GIL is sound.
    let (m, c) = unsafe { (Bound::from_borrowed_ptr(py, main).unbind(), Bound::from_borrowed_ptr(py, cur).unbind()) };
    Some((m, c, shared.runcount.load(Ordering::Relaxed)))
}

/// True if `obj` is the running tasklet of `thread` (another thread).
pub(crate) fn is_current_elsewhere(obj: *mut pyo3::ffi::PyObject, thread: &Arc<Shared>) -> bool {
    !obj.is_null() && thread.current.load(Ordering::Acquire) == obj
}
