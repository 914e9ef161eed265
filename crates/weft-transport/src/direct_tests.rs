//! The waiting thread's read loop against a real socket pair, with a host
//! that routes CHANNEL_DATA frames of channel 1 into its queue.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use weft_wire::{pack_message, CHANNEL_CLOSE, CHANNEL_DATA};

use super::*;
use crate::role::{Acquire, Holder, Role};
use crate::wake::{Event, WaiterFlag};
use crate::FdReader;

const SLICE: Duration = Duration::from_millis(50);

/// A channel queue and its wake-up, as `weft-py`'s `ItemQueue`.
struct Queue {
    items: Mutex<VecDeque<Vec<u8>>>,
    ready: Arc<Event>,
    waiter: WaiterFlag,
}

impl Queue {
    fn new() -> Arc<Self> {
        Arc::new(Queue { items: Mutex::new(VecDeque::new()), ready: Event::new(), waiter: WaiterFlag::new() })
    }

    /// `ItemQueue.push`: append, set the wake-up, poke a direct reader.
    fn put(&self, item: Vec<u8>, role: &Role) {
        self.items.lock().unwrap().push_back(item);
        self.ready.set();
        if self.waiter.must_poke() {
            role.poke();
        }
    }
}

struct TestHost<'a> {
    q: &'a Queue,
    role: &'a Role,
    blocked: std::cell::Cell<usize>,
}

impl Host for TestHost<'_> {
    type Item = Vec<u8>;
    type Error = ();
    fn pop(&self) -> Option<Vec<u8>> {
        self.q.items.lock().unwrap().pop_front()
    }
    fn has_items(&self) -> bool {
        !self.q.items.lock().unwrap().is_empty()
    }
    fn ready(&self) -> &Event {
        &self.q.ready
    }
    fn waiter(&self) -> &WaiterFlag {
        &self.q.waiter
    }
    fn route(&self, r: &mut FdReader) -> Routed {
        loop {
            let mark = r.buf.mark();
            match r.buf.next_frame() {
                Ok(Some((h, range))) if h.msgcode == CHANNEL_DATA && h.channel_id == 1 => {
                    let item = r.buf.slice(range).to_vec();
                    self.q.put(item, self.role);
                }
                Ok(Some(_)) | Err(_) => {
                    r.buf.rewind(mark);
                    return Routed::Stop;
                }
                Ok(None) => return Routed::NeedBytes,
            }
        }
    }
    fn blocking<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        self.blocked.set(self.blocked.get() + 1);
        f()
    }
    fn check_signals(&self) -> Result<(), ()> {
        Ok(())
    }
    fn is_main_thread(&self) -> bool {
        false
    }
}

struct Setup {
    role: Arc<Role>,
    reader: Arc<Mutex<FdReader>>,
    q: Arc<Queue>,
    peer: UnixStream,
    _ours: UnixStream,
}

fn setup() -> Setup {
    let (ours, peer) = UnixStream::pair().unwrap();
    Setup {
        role: Arc::new(Role::new().unwrap()),
        reader: Arc::new(Mutex::new(FdReader::new(ours.as_raw_fd(), 1 << 20))),
        q: Queue::new(),
        peer,
        _ours: ours,
    }
}

fn read(s: &Setup, me: u64, deadline: Option<Instant>) -> Direct<Vec<u8>> {
    let host = TestHost { q: &s.q, role: &s.role, blocked: Default::default() };
    read_for(&s.role, &s.reader, &host, deadline, me, SLICE).unwrap()
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

#[test]
fn a_waiting_thread_reads_its_item_and_gives_the_role_back() {
    let mut s = setup();
    s.peer.write_all(&pack_message(CHANNEL_DATA, 1, b"hi").unwrap()).unwrap();
    assert_eq!(read(&s, 7, soon()), Direct::Item(b"hi".to_vec()));
    assert_eq!(s.role.holder(), Holder::Nobody);
    assert!(!s.q.waiter.must_poke(), "the waiter flag stayed raised");
}

#[test]
fn an_item_queued_already_is_returned_without_reading() {
    let s = setup();
    s.q.put(b"x".to_vec(), &s.role);
    let host = TestHost { q: &s.q, role: &s.role, blocked: Default::default() };
    assert_eq!(read_for(&s.role, &s.reader, &host, soon(), 1, SLICE).unwrap(), Direct::Item(b"x".to_vec()));
    assert_eq!(host.blocked.get(), 0, "blocked although an item was there");
}

#[test]
fn a_frame_for_the_receiver_hands_it_the_role_and_stays_buffered() {
    let mut s = setup();
    let mut bytes = pack_message(CHANNEL_DATA, 1, b"a").unwrap();
    bytes.extend(pack_message(CHANNEL_CLOSE, 1, b"").unwrap());
    s.peer.write_all(&bytes).unwrap();
    // the item before the close is routed into the queue, where the
    // ordinary wait that follows a Fallback finds it
    assert_eq!(read(&s, 7, soon()), Direct::Fallback);
    assert_eq!(s.q.items.lock().unwrap().pop_front(), Some(b"a".to_vec()));
    // handed over: other waiting threads are refused, the receiver takes
    // it at once although its grace period is long
    assert_eq!(s.role.user_acquire(8, &|| false, Instant::now() + SLICE), Acquire::Refused);
    let t0 = Instant::now();
    assert!(s.role.receiver_acquire(Duration::from_secs(60), Instant::now() + Duration::from_secs(10)));
    assert!(t0.elapsed() < Duration::from_secs(5));
    let mut r = s.reader.lock().unwrap();
    let (h, _) = r.buf.next_frame().unwrap().expect("the close is still buffered");
    assert_eq!(h.msgcode, CHANNEL_CLOSE);
}

#[test]
fn the_deadline_ends_the_wait_and_frees_the_role() {
    let s = setup();
    let t0 = Instant::now();
    assert_eq!(read(&s, 3, Some(t0 + Duration::from_millis(120))), Direct::TimedOut);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(110), "returned after {waited:?}");
    assert!(waited < Duration::from_secs(5));
    assert_eq!(s.role.holder(), Holder::Nobody);
}

#[test]
fn the_end_of_the_stream_goes_to_the_receiver() {
    let s = setup();
    s.peer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read(&s, 3, soon()), Direct::Fallback);
    // handed over at once (a 60 s grace would otherwise hold it back)
    let t0 = Instant::now();
    assert!(s.role.receiver_acquire(Duration::from_secs(60), Instant::now() + Duration::from_secs(10)));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_put_from_another_thread_ends_the_poll_at_once() {
    let s = setup();
    let (role, q) = (s.role.clone(), s.q.clone());
    let putter = thread::spawn(move || {
        // wait until the reader is blocked in its poll (it holds the role
        // and has raised the flag), then put from here
        while !(role.holder() == Holder::User(5) && q.waiter.must_poke()) {
            thread::yield_now();
        }
        q.put(b"from elsewhere".to_vec(), &role);
    });
    let t0 = Instant::now();
    // the slice is long: only the poke ends the poll early
    let host = TestHost { q: &s.q, role: &s.role, blocked: Default::default() };
    let got = read_for(&s.role, &s.reader, &host, soon(), 5, Duration::from_secs(5)).unwrap();
    assert_eq!(got, Direct::Item(b"from elsewhere".to_vec()));
    assert!(t0.elapsed() < Duration::from_secs(2), "woken by the slice, not the poke");
    putter.join().unwrap();
}

#[test]
fn the_receiver_in_its_poll_is_kicked_and_yields_the_role() {
    let mut s = setup();
    assert!(s.role.receiver_acquire(Duration::ZERO, Instant::now() + Duration::from_secs(1)));
    let role = s.role.clone();
    let kick_r = {
        // the receiver's side of read_frames: poll, yield if wanted
        thread::spawn(move || {
            let (quiet, _keep) = UnixStream::pair().unwrap();
            loop {
                let ready = role.poll(quiet.as_raw_fd(), Some(Duration::from_secs(10))).unwrap();
                assert_eq!(ready, crate::role::Ready::Kick, "no kick within 10 s");
                if role.receiver_yield_if_wanted() {
                    return;
                }
            }
        })
    };
    s.peer.write_all(&pack_message(CHANNEL_DATA, 1, b"mine").unwrap()).unwrap();
    let t0 = Instant::now();
    assert_eq!(read(&s, 9, soon()), Direct::Item(b"mine".to_vec()));
    assert!(t0.elapsed() < Duration::from_secs(5));
    kick_r.join().unwrap();
}
