//! The rules of a Stackless channel, without the data.
//!
//! A channel keeps two FIFO queues of waiting tasklets, senders and
//! receivers. An operation in one direction pairs with the first waiter of
//! the other direction if there is one; otherwise the caller waits. Stackless
//! never has both queues filled by plain `send`/`receive`; keeping them apart
//! lets a select-style waiter sit in several channels (and directions) at once
//! without confusing the balance.
//!
//! After a pairing, [`after_pairing`] says who runs: the preference rule of
//! Stackless (`-1` the receiver, `1` the sender, `0` neither: the caller goes
//! on), `schedule_all` (the caller always gives way to the next runnable), and
//! a partner of another thread (it is woken there; the caller goes on).
use crate::ring::{Key, Ring};

/// The direction of a channel operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// `send`: the balance counts waiting senders as positive.
    Send,
    /// `receive`: waiting receivers count negative.
    Recv,
}

impl Dir {
    /// +1 for send, -1 for receive (Stackless's `blocked` values).
    pub fn sign(self) -> i8 {
        match self {
            Dir::Send => 1,
            Dir::Recv => -1,
        }
    }

    /// The other direction.
    pub fn opposite(self) -> Dir {
        match self {
            Dir::Send => Dir::Recv,
            Dir::Recv => Dir::Send,
        }
    }
}

/// Who runs once two tasklets have been paired.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    /// Switch to the partner now; the caller stays runnable, right after it.
    Partner,
    /// The partner goes to the end of the run queue; the caller goes on.
    Caller,
    /// The partner goes to the end of the run queue and the caller gives way
    /// to the next runnable tasklet (it stays runnable).
    Away,
}

/// Stackless's rule for who runs after a hand-off in direction `dir`.
pub fn after_pairing(
    dir: Dir,
    preference: i8,
    schedule_all: bool,
    partner_elsewhere: bool,
) -> Next {
    if partner_elsewhere {
        // Another thread's tasklet is only made runnable there.
        Next::Caller
    } else if schedule_all {
        Next::Away
    } else if preference == dir.opposite().sign() {
        Next::Partner
    } else {
        Next::Caller
    }
}

/// The waiting tasklets of one channel.
pub struct Waiters<T> {
    senders: Ring<T>,
    receivers: Ring<T>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            senders: Ring::new(),
            receivers: Ring::new(),
        }
    }
}

impl<T> Waiters<T> {
    /// No waiters.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, d: Dir) -> &Ring<T> {
        match d {
            Dir::Send => &self.senders,
            Dir::Recv => &self.receivers,
        }
    }

    fn queue_mut(&mut self, d: Dir) -> &mut Ring<T> {
        match d {
            Dir::Send => &mut self.senders,
            Dir::Recv => &mut self.receivers,
        }
    }

    /// Waiting senders minus waiting receivers (Stackless's `balance`).
    pub fn balance(&self) -> isize {
        self.senders.len() as isize - self.receivers.len() as isize
    }

    /// True if an operation in direction `d` would find a partner now.
    pub fn can_pair(&self, d: Dir) -> bool {
        !self.queue(d.opposite()).is_empty()
    }

    /// Takes the first waiter an operation in direction `d` pairs with.
    pub fn take_partner(&mut self, d: Dir) -> Option<T> {
        self.queue_mut(d.opposite()).pop_front()
    }

    /// The first waiter an operation in direction `d` would pair with.
    pub fn peek_partner(&self, d: Dir) -> Option<&T> {
        self.queue(d.opposite()).head_value()
    }

    /// Queues a waiter in direction `d`; the key takes it out again.
    pub fn wait(&mut self, d: Dir, v: T) -> Key {
        self.queue_mut(d).push_back(v)
    }

    /// Takes a waiter out of the queue again (a kill, a throw, a timeout, or
    /// another case of a select that fired).
    pub fn cancel(&mut self, d: Dir, k: Key) -> Option<T> {
        self.queue_mut(d).remove(k)
    }

    /// The waiter queued with key `k`.
    pub fn get(&self, d: Dir, k: Key) -> Option<&T> {
        self.queue(d).get(k)
    }

    /// The waiters after / before `k` in its queue (circular).
    pub fn neighbours(&self, d: Dir, k: Key) -> Option<(Key, Key)> {
        let q = self.queue(d);
        Some((q.next(k)?, q.prev(k)?))
    }

    /// Every waiter, senders first, each queue in order.
    pub fn iter(&self) -> impl Iterator<Item = (Dir, &T)> + '_ {
        self.senders
            .iter()
            .map(|v| (Dir::Send, v))
            .chain(self.receivers.iter().map(|v| (Dir::Recv, v)))
    }

    /// The first waiter of the fuller queue (Stackless's `queue` attribute).
    pub fn first(&self) -> Option<(Dir, &T)> {
        self.senders
            .head_value()
            .map(|v| (Dir::Send, v))
            .or_else(|| self.receivers.head_value().map(|v| (Dir::Recv, v)))
    }

    /// Takes every waiter out, senders first.
    pub fn drain(&mut self) -> Vec<(Dir, T)> {
        let mut out: Vec<(Dir, T)> = self
            .senders
            .drain()
            .into_iter()
            .map(|v| (Dir::Send, v))
            .collect();
        out.extend(self.receivers.drain().into_iter().map(|v| (Dir::Recv, v)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_decides_who_runs() {
        // Default preference -1: the receiver runs.
        assert_eq!(after_pairing(Dir::Send, -1, false, false), Next::Partner);
        assert_eq!(after_pairing(Dir::Recv, -1, false, false), Next::Caller);
        // 1: the sender runs.
        assert_eq!(after_pairing(Dir::Send, 1, false, false), Next::Caller);
        assert_eq!(after_pairing(Dir::Recv, 1, false, false), Next::Partner);
        // 0: whoever calls goes on.
        assert_eq!(after_pairing(Dir::Send, 0, false, false), Next::Caller);
        assert_eq!(after_pairing(Dir::Recv, 0, false, false), Next::Caller);
    }

    #[test]
    fn schedule_all_and_other_threads() {
        assert_eq!(after_pairing(Dir::Send, -1, true, false), Next::Away);
        assert_eq!(after_pairing(Dir::Recv, 1, true, false), Next::Away);
        assert_eq!(after_pairing(Dir::Send, -1, true, true), Next::Caller);
        assert_eq!(after_pairing(Dir::Recv, 1, false, true), Next::Caller);
    }

    #[test]
    fn balance_and_pairing_are_fifo() {
        let mut w = Waiters::new();
        assert_eq!(w.balance(), 0);
        w.wait(Dir::Recv, "r1");
        w.wait(Dir::Recv, "r2");
        assert_eq!(w.balance(), -2);
        assert!(w.can_pair(Dir::Send));
        assert!(!w.can_pair(Dir::Recv));
        assert_eq!(w.take_partner(Dir::Send), Some("r1"));
        assert_eq!(w.balance(), -1);
        let k = w.wait(Dir::Send, "s1");
        assert_eq!(w.balance(), 0);
        assert_eq!(w.cancel(Dir::Send, k), Some("s1"));
        assert_eq!(w.cancel(Dir::Send, k), None);
        assert_eq!(w.first(), Some((Dir::Recv, &"r2")));
        assert_eq!(w.drain(), vec![(Dir::Recv, "r2")]);
    }
}
