//! What build.rs checks about the target interpreter before compiling
//! pystate.c. Kept in its own file so that the crate's unit tests (lib.rs,
//! `#[cfg(test)]`) exercise the very code the build script runs.

/// CPython minor versions whose thread-state layout csrc/pystate.c knows.
pub const SUPPORTED: [&str; 5] = ["3.11", "3.12", "3.13", "3.14", "3.15"];

/// Refuses an interpreter weft cannot run on. `version` is `"3.X"`;
/// `gil_disabled` is what `sysconfig.get_config_var('Py_GIL_DISABLED')`
/// printed (`"1"` on a free-threaded build such as 3.13t/3.14t, `"0"` or
/// `"None"` otherwise). `python` names the interpreter in the message.
pub fn check_interpreter(python: &str, version: &str, gil_disabled: &str) -> Result<(), String> {
    if !SUPPORTED.contains(&version) {
        return Err(format!(
            "weft supports CPython {} (found {version} at {python}): building for it would need its \
             thread-state layout in csrc/pystate.c",
            SUPPORTED.join(", ")
        ));
    }
    let free_threaded = matches!(gil_disabled.trim(), "1" | "True" | "true");
    if free_threaded {
        return Err(format!(
            "weft does not support free-threaded CPython yet (found {version}t at {python}, built with \
             Py_GIL_DISABLED): its greenlets share state between threads under the GIL's protection \
             (`unsafe impl Sync for Greenlet`), which a free-threaded interpreter does not give. Build \
             weft for the same version's default (GIL) interpreter, e.g. python{version} instead of \
             python{version}t (maturin -i python{version}, or PYO3_PYTHON=/path/to/python{version})"
        ));
    }
    Ok(())
}
