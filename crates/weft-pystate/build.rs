//! Compiles csrc/pystate.c against the headers of the interpreter weft is built
//! for: the one maturin names in PYO3_PYTHON, else `python3` on PATH.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=csrc/pystate.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import sysconfig,sys; print(sysconfig.get_paths()['include']); print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap_or_else(|e| panic!("weft-pystate: cannot run {python} to find the Python headers: {e}"));
    assert!(out.status.success(), "weft-pystate: {python} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8 from python");
    let mut lines = text.lines();
    let include = lines.next().expect("include dir").to_owned();
    let version = lines.next().expect("version").to_owned();
    let supported = ["3.11", "3.12", "3.13", "3.14"];
    if !supported.contains(&version.as_str()) {
        panic!("weft supports CPython {} (found {version} at {python}): building for it would need its thread-state layout in csrc/pystate.c", supported.join(", "));
    }
    cc::Build::new()
        .file("csrc/pystate.c")
        .include(&include)
        .flag_if_supported("-std=c11")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(true)
        .opt_level(3)
        .compile("weft_pystate");
}
