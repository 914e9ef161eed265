//! loom models of the kill queue: every interleaving of a pushing thread
//! with the owning thread's take and exit.

use loom::sync::Arc;
use loom::thread;

use crate::KillQueue;

#[test]
fn loom_a_push_racing_the_exit_comes_back_exactly_once() {
    loom::model(|| {
        let q = Arc::new(KillQueue::new());
        let pusher = {
            let q = q.clone();
            thread::spawn(move || q.push(7u32).err())
        };
        let mut back = q.take();
        back.extend(q.close());
        back.extend(pusher.join().unwrap());
        assert_eq!(back, vec![7], "an item was stranded or returned twice");
        assert!(q.is_empty());
    });
}

#[test]
fn loom_a_push_before_a_take_is_seen_by_it() {
    loom::model(|| {
        let q = Arc::new(KillQueue::new());
        let pusher = {
            let q = q.clone();
            thread::spawn(move || {
                q.push(1u32).unwrap();
            })
        };
        let early = q.take(); // concurrent: may or may not see it
        pusher.join().unwrap();
        let late = q.take(); // after the push (join): must see it if early did not
        let mut all = early;
        all.extend(late);
        assert_eq!(all, vec![1]);
    });
}

#[test]
fn loom_two_pushers_and_an_exit() {
    loom::model(|| {
        let q = Arc::new(KillQueue::new());
        let pushers: Vec<_> = (1..=2u32)
            .map(|i| {
                let q = q.clone();
                thread::spawn(move || q.push(i).err())
            })
            .collect();
        let mut back = q.close();
        for p in pushers {
            back.extend(p.join().unwrap());
        }
        back.sort();
        assert_eq!(back, vec![1, 2]);
    });
}
