//! Per-tasklet trace and profile functions (Stackless's `trace_function`
//! and `profile_function`): while any tasklet has one, each switch saves
//! the running tasklet's `sys.gettrace()`/`sys.getprofile()` and installs
//! the next one's. Until then switches pay one flag read.
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

use super::sched;
use super::tasklet::Tasklet;

static IN_USE: AtomicBool = AtomicBool::new(false);

pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

pub(crate) fn set_function(slf: &Bound<'_, Tasklet>, f: Py<PyAny>, profile: bool) -> PyResult<()> {
    let py = slf.py();
    IN_USE.store(true, Ordering::Relaxed);
    let current = sched::with(py, |s| s.current.as_ptr() == slf.as_ptr())?;
    if current {
        let sys = py.import("sys")?;
        sys.call_method1(
            if profile { "setprofile" } else { "settrace" },
            (f.clone_ref(py),),
        )?;
    }
    let f = if f.is_none(py) { None } else { Some(f) };
    let old = {
        let mut st = slf.get().state();
        if profile {
            std::mem::replace(&mut st.profile, f)
        } else {
            std::mem::replace(&mut st.trace, f)
        }
    };
    drop(old);
    Ok(())
}

/// Saves `from`'s functions and installs `to`'s.
pub(crate) fn on_switch(py: Python<'_>, from: &Tasklet, to: &Tasklet) -> PyResult<()> {
    let sys = py.import("sys")?;
    let t = sys.call_method0("gettrace")?;
    let p = sys.call_method0("getprofile")?;
    let old = {
        let mut st = from.state();
        (
            std::mem::replace(&mut st.trace, (!t.is_none()).then(|| t.unbind())),
            std::mem::replace(&mut st.profile, (!p.is_none()).then(|| p.unbind())),
        )
    };
    drop(old);
    let (nt, np) = {
        let st = to.state();
        (
            st.trace.as_ref().map(|x| x.clone_ref(py)),
            st.profile.as_ref().map(|x| x.clone_ref(py)),
        )
    };
    sys.call_method1("settrace", (nt,))?;
    sys.call_method1("setprofile", (np,))?;
    Ok(())
}
