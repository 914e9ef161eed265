//! Cargo tests of the binding, in an interpreter embedded in the test
//! binary (weft-py links libpython for `cargo test`; maturin builds the
//! extension with pyo3's `extension-module` feature instead, which leaves
//! it unlinked). `PYO3_PYTHON` names the interpreter, as for the build:
//! `PYO3_PYTHON=~/.pyenv/versions/3.11.7/bin/python3.11 cargo test -p weft-py`.
//!
//! The compiled module is made once per process and put in `sys.modules`
//! as `weft._weft`; each test runs its Python in its own thread, attached
//! once, so each has its own main greenlet.

use std::ffi::CString;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};

fn weft(py: Python<'_>) -> Bound<'_, PyModule> {
    static M: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    M.get_or_init(py, || {
        let m = pyo3::wrap_pymodule!(crate::_weft)(py);
        py.import("sys").unwrap().getattr("modules").unwrap().set_item("weft._weft", &m).unwrap();
        m
    })
    .bind(py)
    .clone()
}

/// Run `code` with `weft` (the compiled module) in its globals; its
/// globals afterwards.
fn run<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyDict> {
    let globals = PyDict::new(py);
    globals.set_item("weft", weft(py)).unwrap();
    let code = CString::new(code).unwrap();
    if let Err(e) = py.run(&code, Some(&globals), None) {
        e.print(py);
        panic!("Python code failed: {e}");
    }
    globals
}

fn attached<R: Send>(f: impl FnOnce(Python<'_>) -> R + Send) -> R {
    Python::initialize();
    std::thread::scope(|s| s.spawn(|| Python::attach(f)).join().unwrap())
}

#[test]
fn greenlets_switch_both_ways_and_carry_values() {
    attached(|py| {
        let g = run(
            py,
            r#"
main = weft.getcurrent()
log = []
def body(x):
    log.append(x)
    y = main.switch(x * 2)
    log.append(y)
    return "done"
g = weft.greenlet(body)
first = g.switch(21)
second = g.switch("again")
"#,
        );
        let get = |k: &str| g.get_item(k).unwrap().unwrap();
        assert_eq!(get("first").extract::<i64>().unwrap(), 42);
        assert_eq!(get("second").extract::<String>().unwrap(), "done");
        assert_eq!(get("log").repr().unwrap().to_string(), "[21, 'again']");
        assert!(get("g").getattr("dead").unwrap().is_truthy().unwrap());
    });
}

#[test]
fn a_throw_reaches_the_suspended_greenlet_and_its_finally_runs() {
    attached(|py| {
        let g = run(
            py,
            r#"
main = weft.getcurrent()
seen = []
def body():
    try:
        main.switch()
    except KeyError as e:
        seen.append(("caught", e.args))
        raise ValueError("out")
    finally:
        seen.append("finally")
g = weft.greenlet(body)
g.switch()
try:
    g.throw(KeyError, "in")
except ValueError as e:
    seen.append(("parent got", str(e)))
"#,
        );
        let seen = g.get_item("seen").unwrap().unwrap().repr().unwrap().to_string();
        assert_eq!(seen, "[('caught', ('in',)), 'finally', ('parent got', 'out')]");
    });
}

#[test]
fn a_kill_queued_by_another_thread_runs_at_the_owners_next_switch() {
    attached(|py| {
        let g = run(
            py,
            r#"
import threading
main = weft.getcurrent()
ran = []
def body():
    try:
        main.switch()
    finally:
        ran.append("finally")
g = weft.greenlet(body)
g.switch()
# the last reference goes away in another thread: the kill is queued here
box = [g]
del g
t = threading.Thread(target=box.clear)
t.start(); t.join()
queued = weft._pending_kills()
weft.getcurrent()          # this thread's next entry kills it
after = weft._pending_kills()
"#,
        );
        let get = |k: &str| g.get_item(k).unwrap().unwrap();
        assert_eq!(get("queued").extract::<usize>().unwrap(), 1);
        assert_eq!(get("after").extract::<usize>().unwrap(), 0);
        assert_eq!(get("ran").repr().unwrap().to_string(), "['finally']");
    });
}

#[test]
fn an_event_wait_times_out_and_a_set_from_another_thread_ends_it() {
    attached(|py| {
        let ev = crate::event::Inner::new();
        let t0 = Instant::now();
        assert!(!crate::event::wait(&ev, py, Some(0.05)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(45));
        let setter = {
            let ev = ev.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                ev.set();
            })
        };
        let t0 = Instant::now();
        assert!(crate::event::wait(&ev, py, Some(10.0)).unwrap());
        assert!(t0.elapsed() < Duration::from_secs(5));
        setter.join().unwrap();
    });
}

#[test]
fn the_bytes_fast_path_writes_what_the_serializer_writes() {
    // FrameWriter.send writes a lone bytes object from its own buffer; the
    // bytes on the wire must be frame_dumps' for the same object.
    attached(|py| {
        for len in [0usize, 1, 255, 70_000] {
            let data = vec![0xabu8; len];
            let obj = PyBytes::new(py, &data);
            let general = crate::transport::frame_dumps(py, 4, 77, obj.as_any()).unwrap();
            let head = crate::transport::bytes_frame_head(py, 4, 77, len).unwrap();
            let mut fast = head.to_vec();
            fast.extend_from_slice(&data);
            fast.push(weft_wire::opcode::STOP);
            assert_eq!(general.as_bytes(), &fast[..], "len {len}");
        }
    });
}

#[test]
fn routed_payloads_decode_to_what_was_serialized() {
    attached(|py| {
        let g = run(py, "objs = [None, 1, -2**70, 1.5, 'text', b'raw', (1, [2, {3: 4}]), frozenset([5])]");
        for obj in g.get_item("objs").unwrap().unwrap().try_iter().unwrap() {
            let obj = obj.unwrap();
            let frame = crate::transport::frame_dumps(py, 4, 1, &obj).unwrap();
            let payload = &frame.as_bytes()[weft_wire::HEADER_SIZE..];
            let back = crate::wire::decode_plain(py, payload).expect("decodes without help");
            assert!(back.eq(&obj).unwrap(), "{obj:?} came back as {back:?}");
        }
    });
}

#[test]
fn an_injected_switch_failure_leaves_both_greenlets_as_they_were() {
    attached(|py| {
        let g = run(
            py,
            r#"
import sys
t = weft._testing
main = weft.getcurrent()
calls = []
g = weft.greenlet(lambda *a: calls.append(a) or main.switch("suspended"))
t.set_fault(g, "switch")
arg = object()
before = sys.getrefcount(arg)
errors = []
for _ in range(10):
    try:
        g.switch(arg)
    except SystemError as e:
        errors.append(str(e))
leaked = sys.getrefcount(arg) - before
unstarted = not g and not g.dead and weft.getcurrent() is main
t.set_fault(g, None)
first = g.switch(arg)
t.set_fault(g, "switch")
try:
    g.switch()
except SystemError as e:
    errors.append(str(e))
still = weft.getcurrent() is main and bool(g)
t.set_fault(g, None)
g.switch()
"#,
        );
        let get = |k: &str| g.get_item(k).unwrap().unwrap();
        let errors: Vec<String> = get("errors").extract().unwrap();
        assert_eq!(errors.len(), 11);
        assert!(errors[..10].iter().all(|e| e.starts_with("Failed to switch stacks into a greenlet for the first time.")));
        assert!(errors[10].starts_with("Failed to switch stacks into a running greenlet."));
        assert_eq!(get("leaked").extract::<isize>().unwrap(), 0);
        assert!(get("unstarted").is_truthy().unwrap());
        assert_eq!(get("first").extract::<String>().unwrap(), "suspended");
        assert!(get("still").is_truthy().unwrap());
        assert_eq!(get("calls").len().unwrap(), 1);
        assert!(get("g").getattr("dead").unwrap().is_truthy().unwrap());
    });
}
