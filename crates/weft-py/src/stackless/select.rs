//! `select`: one wait on several channel operations, of which exactly one
//! takes effect (weft.select is the face; docs/select.md the rules).
//!
//! Cases are receives from or sends to Stackless channels, and receives from
//! other sources that the face polls (a `weft.execnet` channel), each with an
//! optional wake-up event. A pass over the cases, from a random start, takes
//! the first that can complete now. Otherwise the tasklet (a plain thread is
//! its main tasklet) parks: it waits in each Stackless channel's queue and on
//! each event. A channel operation that pairs with a parked select waiter
//! fires it through [`offer`] (exactly once: `fired` is set under the GIL
//! before anything else happens, and later partners skip the stale entries);
//! an event's wake-up only makes it look again. When it runs again it takes
//! its other entries out of the channels.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple, PyType};

use weft_sched::chan::Dir;
use weft_sched::Key;

use crate::event::PyEvent;

use super::channel::{action, Channel};
use super::sched;
use super::tasklet::{Place, Tasklet, Temp};

const NOT_FIRED: usize = usize::MAX;

/// A Stackless case's place: the channel object, the direction, the key in
/// that direction's queue.
type Entry = (*mut pyo3::ffi::PyObject, Dir, Key);

/// A select waiting: which case fired, and what it carried.
pub(crate) struct Select {
    fired: AtomicUsize,
    /// Per case: where a Stackless case waits.
    entries: Mutex<Vec<Option<Entry>>>,
    /// Per case: the value a send case offers.
    sends: Mutex<Vec<Option<Py<PyAny>>>>,
    /// What the fired case received (a receive), or Empty.
    got: Mutex<Option<Temp>>,
}

// SAFETY: every field is touched with the GIL held (the raw channel pointers
// are only followed under it); the mutexes only satisfy the compiler.
unsafe impl Send for Select {}
// SAFETY: as above.
unsafe impl Sync for Select {}

/// A channel operation in direction `dir` (of the running tasklet, on
/// channel `chan`) meets the select waiter `p`: fire it if it has not fired.
/// `Some(received)` when it took the hand-off (and, for a send, our value
/// from `out`); `None`, `out` untouched, when the entry was stale.
/// Out of line: the plain hand-off in `channel::pair` need not carry it.
#[inline(never)]
pub(crate) fn offer(py: Python<'_>, p: &Py<Tasklet>, chan: *mut pyo3::ffi::PyObject, dir: Dir, out: &mut Temp) -> Option<Temp> {
    let sel = p.get().state().select.clone()?;
    let case = {
        let entries = sel.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().position(|e| matches!(e, Some((c, d, _)) if *c == chan && *d == dir.opposite()))
    };
    let case = case?;
    if sel.fired.compare_exchange(NOT_FIRED, case, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return None;
    }
    let out = std::mem::replace(out, Temp::Empty);
    // Its entry in this channel is gone already (popped by the caller).
    sel.entries.lock().unwrap_or_else(|e| e.into_inner())[case] = None;
    let got = match dir {
        // We send: the select's receive case gets our value.
        Dir::Send => {
            *sel.got.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
            Temp::Empty
        }
        // We receive: the select's send case gives its value.
        Dir::Recv => {
            let v = sel.sends.lock().unwrap_or_else(|e| e.into_inner())[case].take();
            v.map_or(Temp::Empty, Temp::Value)
        }
    };
    wake(py, p);
    Some(got)
}

/// Makes a parked select waiter runnable (here, or through its thread's mailbox).
fn wake(py: Python<'_>, p: &Py<Tasklet>) {
    if let Place::Parked(token) = p.get().place() {
        let theirs = p.get().thread();
        let here = sched::with(py, |s| Arc::ptr_eq(&s.shared, &theirs)).unwrap_or(false);
        if here {
            let _ = sched::with(py, |s| sched::insert_back(s, p.clone_ref(py)));
        } else {
            theirs.post_token(p.clone_ref(py), Some(token));
        }
    }
}

#[derive(Clone)]
struct Case<'py> {
    kind: u8,
    obj: Bound<'py, PyAny>,
    value: Option<Bound<'py, PyAny>>,
    event: Option<Bound<'py, PyAny>>,
}

/// Up to this many cases are kept in the frame, not in a `Vec`.
const FEW: usize = 4;

/// The cases of one `select` call: the first `FEW` in an array (a select of
/// two or three cases allocates nothing), all of them in a `Vec` past that.
struct Cases<'py> {
    n: usize,
    few: [Case<'py>; FEW],
    many: Vec<Case<'py>>,
}

impl<'py> Cases<'py> {
    fn new(py: Python<'py>) -> Self {
        let blank = Case { kind: RECV, obj: py.None().into_bound(py), value: None, event: None };
        Cases { n: 0, few: std::array::from_fn(|_| blank.clone()), many: Vec::new() }
    }

    fn push(&mut self, c: Case<'py>) {
        if self.many.is_empty() && self.n < FEW {
            self.few[self.n] = c;
        } else {
            if self.many.is_empty() {
                self.many.extend(self.few.iter().cloned());
            }
            self.many.push(c);
        }
        self.n += 1;
    }

    fn as_slice(&self) -> &[Case<'py>] {
        if self.many.is_empty() { &self.few[..self.n] } else { &self.many }
    }
}

const RECV: u8 = 0;
const SEND: u8 = 1;
const POLL: u8 = 2;

fn xorshift() -> usize {
    use std::cell::Cell;
    thread_local!(static SEED: Cell<u64> = Cell::new(0x2545_f491_4f6c_dd1d ^ (std::process::id() as u64) << 17));
    SEED.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = 0x9e37_79b9_7f4a_7c15;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x as usize
    })
}

/// One pass, from a random start: the first case that completes now.
/// `closed` is returned as the value of a case whose channel is closed.
fn poll<'py>(_py: Python<'py>, cases: &[Case<'py>], closed: &Bound<'py, PyAny>) -> PyResult<Option<(usize, Py<PyAny>)>> {
    let n = cases.len();
    let start = xorshift() % n;
    for k in 0..n {
        let i = (start + k) % n;
        let c = &cases[i];
        match c.kind {
            RECV | SEND => {
                let ch = c.obj.cast::<Channel>()?;
                let dir = if c.kind == RECV { Dir::Recv } else { Dir::Send };
                if ch.get().ready_for(dir) {
                    let out = match &c.value {
                        Some(v) => Temp::Value(v.clone().unbind()),
                        None => Temp::Empty,
                    };
                    // A partner is waiting: this does not block.
                    let v = action(ch, dir, out).map_err(|e| *e)?;
                    return Ok(Some((i, v)));
                }
                if ch.get().closed_for(dir) {
                    return Ok(Some((i, closed.clone().unbind())));
                }
            }
            _ => {
                let r = c.obj.call0()?;
                let (ready, value): (bool, Py<PyAny>) = r.extract()?;
                if ready {
                    return Ok(Some((i, value)));
                }
            }
        }
    }
    Ok(None)
}

/// Waits for one of `cases`: a list of `(kind, obj, value, event)` where kind
/// 0 receives from Stackless channel `obj`, 1 sends `value` to it, and 2
/// calls `obj()` for `(ready, value)` (a receive from another source; `event`
/// is weft's Event set when it may be ready). Returns `(index, value)`;
/// `(-1, default)` if `nonblocking` and nothing is ready; raises
/// TimeoutError after `timeout` seconds.
#[pyfunction]
#[pyo3(signature = (cases, closed, timeout=None, nonblocking=false, default=None))]
pub(crate) fn select<'py>(py: Python<'py>, cases: &Bound<'py, PyList>, closed: Bound<'py, PyAny>, timeout: Option<f64>, nonblocking: bool, default: Option<Py<PyAny>>) -> PyResult<(isize, Py<PyAny>)> {
    let mut cs = Vec::with_capacity(cases.len());
    for item in cases.iter() {
        let t = item.cast_into::<PyTuple>().map_err(|_| PyTypeError::new_err("select cases are (kind, obj, value, event) tuples"))?;
        cs.push(case_of_tuple(t)?);
    }
    run_select(py, &cs, &closed, timeout, nonblocking, default)
}

/// `select` over cases already checked.
fn run_select<'py>(py: Python<'py>, cs: &[Case<'py>], closed: &Bound<'py, PyAny>, timeout: Option<f64>, nonblocking: bool, default: Option<Py<PyAny>>) -> PyResult<(isize, Py<PyAny>)> {
    if cs.is_empty() {
        return Err(PyValueError::new_err("select() needs at least one case"));
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(Duration::try_from_secs_f64(t.max(0.0)).ok()?));
    loop {
        if let Some((i, v)) = poll(py, cs, closed)? {
            return Ok((i as isize, v));
        }
        if nonblocking {
            return Ok((-1, default.unwrap_or_else(|| py.None())));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PyTimeoutError::new_err(format!("select(): no case was ready within {} seconds", timeout.unwrap_or(0.0))));
        }
        if let Some(r) = park(py, cs, deadline)? {
            return Ok(r);
        }
    }
}

/// weft.select's case classes, its case builder (for gateway channels and
/// bad input) and its CLOSED marker, handed over once at its import.
struct Faces {
    recv: Py<PyType>,
    send: Py<PyType>,
    build: Py<PyAny>,
    closed: Py<PyAny>,
}

static FACES: PyOnceLock<Faces> = PyOnceLock::new();

/// Where a `__slots__` attribute of a case class lives in its instances,
/// as found once at import: the class's version tag then (any change to
/// the class gives it another) and the slots' offsets. `None` if the
/// attributes are not plain slots.
struct SlotsAt {
    version: std::ffi::c_uint,
    channel: isize,
    value: isize,
}

static RECV_AT: PyOnceLock<Option<SlotsAt>> = PyOnceLock::new();
static SEND_AT: PyOnceLock<Option<SlotsAt>> = PyOnceLock::new();

/// The offset of the slot behind attribute `name` of `ty`, if it is a
/// `__slots__` member holding an object.
fn slot_offset(ty: &Bound<'_, PyType>, name: &str) -> Option<isize> {
    let d = ty.getattr(name).ok()?;
    let member_t = &raw mut pyo3::ffi::PyMemberDescr_Type;
    // SAFETY: `d` is a live object (GIL held); its type is compared only.
    if unsafe { pyo3::ffi::Py_TYPE(d.as_ptr()) } != member_t {
        return None;
    }
    // SAFETY: `d` is exactly a member descriptor (checked above), whose
    // layout is PyMemberDescrObject; `d_member` points to the member
    // definition its type keeps for the type's life (`ty` is alive).
    let m = unsafe { &*(*d.as_ptr().cast::<pyo3::ffi::PyMemberDescrObject>()).d_member };
    (m.type_code == pyo3::ffi::Py_T_OBJECT_EX && m.flags & pyo3::ffi::Py_READONLY == 0).then_some(m.offset)
}

fn slots_at(ty: &Bound<'_, PyType>, value: bool) -> Option<SlotsAt> {
    let channel = slot_offset(ty, "channel")?;
    let value = if value { slot_offset(ty, "value")? } else { 0 };
    // SAFETY: a live type object (GIL held); the lookups above gave it a
    // version tag (0 if it has none, never matched below).
    let version = unsafe { (*ty.as_type_ptr()).tp_version_tag };
    (version != 0).then_some(SlotsAt { version, channel, value })
}

#[pyfunction]
pub(crate) fn _set_select_faces(py: Python<'_>, recv: Py<PyType>, send: Py<PyType>, build: Py<PyAny>, closed: Py<PyAny>) {
    let _ = RECV_AT.set(py, slots_at(recv.bind(py), false));
    let _ = SEND_AT.set(py, slots_at(send.bind(py), true));
    let _ = FACES.set(py, Faces { recv, send, build, closed });
}

/// Attribute `name` of case `c` (of exactly type `ty`, one of the case
/// classes): read from its slot at `offset` when `at` says where it is and
/// the class is unchanged since, else looked up as Python would.
fn case_attr<'py>(c: &Bound<'py, PyAny>, ty: *mut pyo3::ffi::PyTypeObject, at: Option<&SlotsAt>, offset: impl Fn(&SlotsAt) -> isize, name: &Bound<'py, pyo3::types::PyString>) -> PyResult<Bound<'py, PyAny>> {
    if let Some(at) = at {
        // SAFETY: `ty` is the live type of `c` (GIL held), read only.
        if unsafe { (*ty).tp_version_tag } == at.version {
            // SAFETY: `c` is exactly of the class `at` describes (the
            // caller's check), unchanged since (same version tag): its
            // attribute is the `__slots__` member found then, an object
            // pointer (or NULL while unset) at this offset of every
            // instance, which `c` (alive, GIL held) is.
            let p = unsafe { *c.as_ptr().cast::<u8>().offset(offset(at)).cast::<*mut pyo3::ffi::PyObject>() };
            if !p.is_null() {
                // SAFETY: a live object the instance holds; we take a
                // reference of our own.
                return Ok(unsafe { Bound::from_borrowed_ptr(c.py(), p) });
            }
        }
    }
    c.getattr(name)
}

/// `weft.select.select(*cases, timeout=None, default=...)`: see
/// python/weft/select.py. Cases on Stackless channels are read here, in
/// one call; any other case (a gateway channel's, bad input) goes through
/// the face's builder, which also gives the errors.
///
/// Called as METH_FASTCALL | METH_KEYWORDS (see `add_select_cases`): the
/// positional cases are read where CPython passes them, with no tuple made
/// for them.
///
/// # Safety
/// Called by CPython through the trampoline: the `nargs` positional
/// arguments at `args`, followed by one value per name in `kwnames` (a
/// tuple, or NULL), are live borrowed references.
unsafe fn select_cases(
    py: Python<'_>,
    _module: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> PyResult<*mut pyo3::ffi::PyObject> {
    let n = nargs as usize;
    let pos: &[*mut pyo3::ffi::PyObject] = if n == 0 {
        &[]
    } else {
        // SAFETY: `nargs` live pointers at `args` (our contract), for the call.
        unsafe { std::slice::from_raw_parts(args, n) }
    };
    let mut timeout = None;
    let mut default = None;
    if !kwnames.is_null() {
        // SAFETY: a live tuple of the keyword names (our contract).
        let names = unsafe { Bound::from_borrowed_ptr(py, kwnames) }.cast_into::<PyTuple>()?;
        for (j, k) in names.iter().enumerate() {
            // SAFETY: one value per keyword name follows the positionals.
            let v = unsafe { Bound::from_borrowed_ptr(py, *args.add(n + j)) };
            match k.extract::<&str>()? {
                "timeout" => {
                    if !v.is_none() {
                        let t: f64 = v.extract()?;
                        if t.is_nan() || t < 0.0 {
                            return Err(PyValueError::new_err("select(): timeout must be None or >= 0 seconds"));
                        }
                        timeout = Some(t);
                    }
                }
                "default" => default = Some(v.unbind()),
                other => return Err(PyTypeError::new_err(format!("select() got an unexpected keyword argument '{other}' (it takes timeout= and default=)"))),
            }
        }
    }
    let r = select_over(py, pos, timeout, default)?;
    Ok(r.into_pyobject(py)?.into_ptr())
}

/// `select_cases` once its arguments are read: `pos` the positional ones.
fn select_over(py: Python<'_>, pos: &[*mut pyo3::ffi::PyObject], timeout: Option<f64>, default: Option<Py<PyAny>>) -> PyResult<(isize, Py<PyAny>)> {
    let faces = FACES.get(py).ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("weft.select is not imported"))?;
    // The cases: the positional arguments, or the one list or tuple given.
    // Read by index (an iterator would ask the list for a length hint,
    // which makes a bound method).
    let one = match pos {
        // SAFETY: a live borrowed argument (the caller's); we take a reference.
        [c] => Some(unsafe { Bound::from_borrowed_ptr(py, *c) }),
        _ => None,
    };
    let list = one.as_ref().filter(|c| c.is_exact_instance_of::<PyList>()).map(|c| c.cast::<PyList>()).transpose()?;
    let tuple = one.as_ref().filter(|c| c.is_exact_instance_of::<PyTuple>()).map(|c| c.cast::<PyTuple>()).transpose()?;
    let count = || match (list, tuple) {
        (Some(l), _) => l.len(),
        (_, Some(t)) => t.len(),
        _ => pos.len(),
    };
    let recv_t = faces.recv.bind(py).as_type_ptr();
    let send_t = faces.send.bind(py).as_type_ptr();
    let mut cs = Cases::new(py);
    let mut k = 0;
    while k < count() {
        let c = match (list, tuple) {
            (Some(l), _) => l.get_item(k)?,
            (_, Some(t)) => t.get_item(k)?,
            // SAFETY: a live borrowed argument (the caller's); we take a reference.
            _ => unsafe { Bound::from_borrowed_ptr(py, pos[k]) },
        };
        k += 1;
        let ty = c.get_type_ptr();
        let direct = if ty == recv_t || ty == send_t {
            let send = ty == send_t;
            let at = if send { SEND_AT.get(py) } else { RECV_AT.get(py) }.and_then(|a| a.as_ref());
            let ch = case_attr(&c, ty, at, |a| a.channel, pyo3::intern!(py, "channel"))?;
            if ch.cast::<Channel>().is_ok() {
                let value = if send { Some(case_attr(&c, ty, at, |a| a.value, pyo3::intern!(py, "value"))?) } else { None };
                Some(Case { kind: if send { SEND } else { RECV }, obj: ch, value, event: None })
            } else {
                None
            }
        } else {
            None
        };
        let case = match direct {
            Some(case) => case,
            None => case_of_tuple(faces.build.bind(py).call1((c,))?.cast_into::<PyTuple>()?)?,
        };
        cs.push(case);
    }
    let nonblocking = default.is_some();
    run_select(py, cs.as_slice(), faces.closed.bind(py), timeout, nonblocking, default)
}

/// Adds `select_cases` to module `m` as a METH_FASTCALL | METH_KEYWORDS
/// builtin (PyO3 makes a function taking `*args` a METH_VARARGS one, for
/// which CPython packs the arguments in a tuple and PyO3 copies it).
pub(crate) fn add_select_cases(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    let py = m.py();
    let def = Box::leak(Box::new(pyo3::ffi::PyMethodDef {
        ml_name: c"select_cases".as_ptr(),
        ml_meth: pyo3::ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(fastcall_cfunction_with_keywords, select_cases),
        },
        ml_flags: pyo3::ffi::METH_FASTCALL | pyo3::ffi::METH_KEYWORDS,
        ml_doc: c"select_cases(*cases, **kwargs)\n--\n\n`weft.select.select(*cases, timeout=None, default=...)`: see\npython/weft/select.py. Cases on Stackless channels are read here, in\none call; any other case (a gateway channel's, bad input) goes through\nthe face's builder, which also gives the errors.".as_ptr(),
    }));
    let name = m.name()?;
    // SAFETY: `def` is leaked, so it outlives the function, as CPython
    // requires; `m` and `name` are live objects, which it references.
    let f = unsafe { pyo3::ffi::PyCFunction_NewEx(def, m.as_ptr(), name.as_ptr()) };
    // SAFETY: a new reference or NULL with an exception set.
    let f = unsafe { Bound::from_owned_ptr_or_err(py, f) }?;
    m.add("select_cases", f)
}

/// A case from the face's `(kind, obj, value, event)` tuple.
fn case_of_tuple(t: Bound<'_, PyTuple>) -> PyResult<Case<'_>> {
    let kind: u8 = t.get_item(0)?.extract()?;
    let obj = t.get_item(1)?;
    let value = t.get_item(2)?;
    let event = t.get_item(3)?;
    if kind > POLL {
        return Err(PyValueError::new_err("select case kind must be 0 (receive), 1 (send) or 2 (poll)"));
    }
    if kind != POLL && obj.cast::<Channel>().is_err() {
        return Err(PyTypeError::new_err("a receive or send case needs a weft.stackless channel"));
    }
    Ok(Case { kind, obj, value: (kind == SEND).then_some(value), event: (!event.is_none()).then_some(event) })
}

/// Parks in every case until one fires (its result) or an event or the
/// deadline wakes us to poll again (None).
fn park<'py>(py: Python<'py>, cases: &[Case<'py>], deadline: Option<Instant>) -> PyResult<Option<(isize, Py<PyAny>)>> {
    let (td, me) = sched::current_checked(py)?;
    let t = me.get();
    let sel = Arc::new(Select {
        fired: AtomicUsize::new(NOT_FIRED),
        entries: Mutex::new(vec![None; cases.len()]),
        sends: Mutex::new(cases.iter().map(|c| c.value.as_ref().map(|v| v.clone().unbind())).collect()),
        got: Mutex::new(None),
    });
    let token = sched::park_current(py, &me, deadline, Some(sel.clone()))?;
    for (i, c) in cases.iter().enumerate() {
        match c.kind {
            RECV | SEND => {
                let ch = c.obj.cast::<Channel>()?;
                let dir = if c.kind == RECV { Dir::Recv } else { Dir::Send };
                let key = ch.get().wait_for_select(dir, me.clone_ref(py));
                sel.entries.lock().unwrap_or_else(|e| e.into_inner())[i] = Some((c.obj.as_ptr(), dir, key));
            }
            _ => {
                if let Some(ev) = &c.event {
                    if let Ok(e) = ev.cast::<PyEvent>() {
                        e.get().inner().add_waker(sched::waker(py, &me, token));
                    }
                }
            }
        }
    }
    // Without weft's event to wake us, a poll case is looked at again soon.
    let polls_blind = cases.iter().any(|c| c.kind == POLL && c.event.as_ref().is_none_or(|e| e.cast::<PyEvent>().is_err()));
    if polls_blind {
        let soon = Instant::now() + Duration::from_millis(10);
        let when = deadline.map_or(soon, |d| d.min(soon));
        sched::with(py, |s| s.sleepers.push((when, me.clone_ref(py), token)))?;
    }
    let result = wait_parked(py, td, &me, token);
    // Running again: leave every channel still holding an entry of ours.
    let entries = std::mem::take(&mut *sel.entries.lock().unwrap_or_else(|e| e.into_inner()));
    for (chan, dir, key) in entries.into_iter().flatten() {
        // SAFETY: the channel objects are the cases' own, kept alive by
        // `cases` (each case holds its channel) for the whole call.
        let ch = unsafe { Bound::from_borrowed_ptr(py, chan).cast_into_unchecked::<Channel>() };
        drop(ch.get().cancel(dir, key));
    }
    {
        let mut st = t.state();
        st.select = None;
    }
    result?; // wait_parked linked us back into the ring
    let fired = sel.fired.load(Ordering::Acquire);
    if fired == NOT_FIRED {
        return Ok(None);
    }
    let got = sel.got.lock().unwrap_or_else(|e| e.into_inner()).take();
    let value = match got {
        Some(Temp::Value(v)) => {
            if super::exits::is_bomb(py, v.bind(py)) {
                return Err(super::exits::bomb_error(py, v.bind(py)));
            }
            v
        }
        Some(Temp::Exc(e)) => return Err(*e),
        _ => py.None(),
    };
    Ok(Some((fired as isize, value)))
}

/// Switches away until something makes this parked tasklet runnable; with
/// nothing else to run, waits for another thread or the deadline.
fn wait_parked(py: Python<'_>, td: *mut crate::greenlet::ThreadData, me: &Py<Tasklet>, token: u64) -> PyResult<()> {
    sched::wait_parked(py, td, me, token, "Deadlock: select() waits on channels nothing else can reach (no other tasklet can run and no other thread is alive)")
}
