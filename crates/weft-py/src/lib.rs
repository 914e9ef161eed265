//! `weft._weft`: the compiled module behind the `weft` Python package.
use pyo3::prelude::*;
mod wire;

#[pymodule]
fn _weft(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    wire::register(m)?;
    Ok(())
}
