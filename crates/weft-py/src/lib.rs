//! `weft._weft`: the compiled module behind the `weft` Python package.
//! Each submodule adds one family of Python-visible types; the public API is
//! chosen in `python/weft/`.
use pyo3::prelude::*;

mod event;
mod greenlet;
mod queue;
mod stackless;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

#[pymodule]
fn _weft(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    greenlet::register(m)?;
    stackless::register(m)?;
    wire::register(m)?;
    transport::register(m)?;
    event::register(m)?;
    queue::register(m)?;
    // `import weft._weft.stackless` (and tools that import a module by name,
    // as mypy's stubtest does for python/weft/_weft/stackless.pyi) find the
    // submodule, which is otherwise only an attribute.
    let stackless = m.getattr("stackless")?;
    m.py().import("sys")?.getattr("modules")?.set_item("weft._weft.stackless", stackless)?;
    Ok(())
}
