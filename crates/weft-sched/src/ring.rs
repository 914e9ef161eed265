//! A circular doubly linked list over a slab, with stable keys.
//!
//! Every operation is O(1). A [`Key`] names one node for as long as it is in
//! the ring; a key of a removed node is refused (its generation no longer
//! matches), so a stale key can never unlink somebody else.

/// The end of the free chain.
const NONE: u32 = u32::MAX;

/// Names one node of a [`Ring`] while it is linked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Key {
    idx: u32,
    gen: u32,
}

struct Node<T> {
    val: Option<T>,
    gen: u32,
    prev: u32,
    next: u32,
}

/// A circular list with a head. `push_back` links a value just before the
/// head (the end of the round), `advance` makes the head's successor the
/// head (one turn of round-robin).
pub struct Ring<T> {
    nodes: Vec<Node<T>>,
    /// The first unused node; unused nodes are chained through `next`
    /// (`NONE` ends the chain), so reuse touches no second vector.
    free: u32,
    head: Option<u32>,
    len: usize,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring {
            nodes: Vec::new(),
            free: NONE,
            head: None,
            len: 0,
        }
    }
}

impl<T> Ring<T> {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of linked values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is linked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn key_of(&self, idx: u32) -> Key {
        Key {
            idx,
            gen: self.nodes[idx as usize].gen,
        }
    }

    fn valid(&self, k: Key) -> bool {
        self.nodes
            .get(k.idx as usize)
            .is_some_and(|n| n.gen == k.gen && n.val.is_some())
    }

    /// True if `k` names a node linked in this ring now.
    pub fn contains(&self, k: Key) -> bool {
        self.valid(k)
    }

    /// The head's key.
    pub fn head(&self) -> Option<Key> {
        self.head.map(|i| self.key_of(i))
    }

    /// The head's value.
    pub fn head_value(&self) -> Option<&T> {
        self.head.and_then(|i| self.nodes[i as usize].val.as_ref())
    }

    /// The value `k` names, if it is linked.
    pub fn get(&self, k: Key) -> Option<&T> {
        if self.valid(k) {
            self.nodes[k.idx as usize].val.as_ref()
        } else {
            None
        }
    }

    /// The node after `k` (the head's successor for the last node).
    pub fn next(&self, k: Key) -> Option<Key> {
        self.valid(k)
            .then(|| self.key_of(self.nodes[k.idx as usize].next))
    }

    /// The node before `k`.
    pub fn prev(&self, k: Key) -> Option<Key> {
        self.valid(k)
            .then(|| self.key_of(self.nodes[k.idx as usize].prev))
    }

    fn alloc(&mut self, val: T) -> u32 {
        match self.free {
            NONE => {
                let i = u32::try_from(self.nodes.len()).ok().filter(|&i| i != NONE).expect("more than 2^32 - 1 nodes in one ring");
                self.nodes.push(Node {
                    val: Some(val),
                    gen: 0,
                    prev: i,
                    next: i,
                });
                i
            }
            i => {
                let n = &mut self.nodes[i as usize];
                self.free = n.next;
                debug_assert!(n.val.is_none(), "a free node holds no value");
                // Written without dropping: a free node holds none.
                std::mem::forget(n.val.replace(val));
                i
            }
        }
    }

    /// Links `val` right before the node at `at` (or as the only node).
    fn link_before(&mut self, at: Option<u32>, val: T) -> u32 {
        let i = self.alloc(val);
        match at {
            None => {
                let n = &mut self.nodes[i as usize];
                n.prev = i;
                n.next = i;
                self.head = Some(i);
            }
            Some(a) => {
                let p = self.nodes[a as usize].prev;
                self.nodes[i as usize].prev = p;
                self.nodes[i as usize].next = a;
                self.nodes[p as usize].next = i;
                self.nodes[a as usize].prev = i;
            }
        }
        self.len += 1;
        i
    }

    /// Links `val` at the end of the round: just before the head.
    pub fn push_back(&mut self, val: T) -> Key {
        let i = self.link_before(self.head, val);
        self.key_of(i)
    }

    /// Links `val` right after the node `at`.
    pub fn insert_after(&mut self, at: Key, val: T) -> Key {
        assert!(self.valid(at), "insert_after: stale key");
        let next = self.nodes[at.idx as usize].next;
        let i = self.link_before(Some(next), val);
        self.key_of(i)
    }

    /// Links `val` right before the node `at` (at the end of the round if
    /// `at` is the head).
    pub fn insert_before(&mut self, at: Key, val: T) -> Key {
        assert!(self.valid(at), "insert_before: stale key");
        let i = self.link_before(Some(at.idx), val);
        self.key_of(i)
    }

    /// Unlinks the node `k` and returns its value; if it was the head, its
    /// successor becomes the head. `None` for a stale key.
    pub fn remove(&mut self, k: Key) -> Option<T> {
        if !self.valid(k) {
            return None;
        }
        let i = k.idx;
        let (p, nx) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        if nx == i {
            self.head = None;
        } else {
            self.nodes[p as usize].next = nx;
            self.nodes[nx as usize].prev = p;
            if self.head == Some(i) {
                self.head = Some(nx);
            }
        }
        let n = &mut self.nodes[i as usize];
        n.gen = n.gen.wrapping_add(1);
        n.next = self.free;
        self.free = i;
        self.len -= 1;
        n.val.take()
    }

    /// Unlinks the head (the oldest value, used as a FIFO).
    pub fn pop_front(&mut self) -> Option<T> {
        let h = self.head()?;
        self.remove(h)
    }

    /// Makes the head's successor the head.
    pub fn advance(&mut self) {
        if let Some(h) = self.head {
            self.head = Some(self.nodes[h as usize].next);
        }
    }

    /// Makes `k` the head, keeping the circular order.
    pub fn set_head(&mut self, k: Key) {
        assert!(self.valid(k), "set_head: stale key");
        self.head = Some(k.idx);
    }

    /// The values from the head round the ring.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let mut at = self.head;
        let mut left = self.len;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let i = at?;
            left -= 1;
            at = Some(self.nodes[i as usize].next);
            self.nodes[i as usize].val.as_ref()
        })
    }

    /// Unlinks everything, head first.
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        while let Some(v) = self.pop_front() {
            out.push(v);
        }
        self.nodes.clear();
        self.free = NONE;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(r: &Ring<u32>) -> Vec<u32> {
        r.iter().copied().collect()
    }

    #[test]
    fn push_back_goes_to_the_end_of_the_round() {
        let mut r = Ring::new();
        let a = r.push_back(1);
        r.push_back(2);
        r.push_back(3);
        assert_eq!(order(&r), [1, 2, 3]);
        assert_eq!(r.head(), Some(a));
        r.advance();
        assert_eq!(order(&r), [2, 3, 1]);
        r.push_back(4);
        assert_eq!(order(&r), [2, 3, 1, 4]);
    }

    #[test]
    fn next_and_prev_are_circular() {
        let mut r = Ring::new();
        let a = r.push_back(1);
        let b = r.push_back(2);
        assert_eq!(r.next(a), Some(b));
        assert_eq!(r.next(b), Some(a));
        assert_eq!(r.prev(a), Some(b));
        let only = Ring::<u8>::new();
        assert_eq!(only.head(), None);
    }

    #[test]
    fn removing_the_head_makes_its_successor_the_head() {
        let mut r = Ring::new();
        let a = r.push_back(1);
        r.push_back(2);
        assert_eq!(r.remove(a), Some(1));
        assert_eq!(r.head_value(), Some(&2));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn stale_keys_are_refused() {
        let mut r = Ring::new();
        let a = r.push_back(1);
        assert_eq!(r.remove(a), Some(1));
        let b = r.push_back(2); // reuses the slot
        assert_eq!(r.remove(a), None);
        assert!(!r.contains(a));
        assert_eq!(r.get(b), Some(&2));
    }

    #[test]
    fn insert_after_and_before() {
        let mut r = Ring::new();
        let a = r.push_back(1);
        r.push_back(3);
        r.insert_after(a, 2);
        assert_eq!(order(&r), [1, 2, 3]);
        r.insert_before(a, 9);
        assert_eq!(order(&r), [1, 2, 3, 9]);
        let k = r.head().unwrap();
        r.set_head(r.next(k).unwrap());
        assert_eq!(order(&r), [2, 3, 9, 1]);
    }

    #[test]
    fn fifo_and_drain() {
        let mut r = Ring::new();
        for i in 0..5 {
            r.push_back(i);
        }
        assert_eq!(r.pop_front(), Some(0));
        assert_eq!(r.drain(), vec![1, 2, 3, 4]);
        assert!(r.is_empty());
    }

    /// Random operations against a Vec model.
    #[test]
    fn matches_a_vec_model() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut r = Ring::new();
        let mut model: Vec<(u32, Key)> = Vec::new();
        for step in 0..20_000u32 {
            match rnd() % 4 {
                0 | 1 => {
                    let k = r.push_back(step);
                    model.push((step, k));
                }
                2 if !model.is_empty() => {
                    let i = (rnd() as usize) % model.len();
                    let (v, k) = model.remove(i);
                    assert_eq!(r.remove(k), Some(v));
                }
                _ if !model.is_empty() => {
                    r.advance();
                    model.rotate_left(1);
                }
                _ => {}
            }
            assert_eq!(r.len(), model.len());
            assert_eq!(
                r.iter().copied().collect::<Vec<_>>(),
                model.iter().map(|m| m.0).collect::<Vec<_>>()
            );
        }
    }
}
