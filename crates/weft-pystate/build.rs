//! Compiles csrc/pystate.c against the headers of the interpreter weft is built
//! for: the one maturin names in PYO3_PYTHON, else `python3` on PATH.
use std::process::Command;

#[path = "build_checks.rs"]
mod build_checks;

fn main() {
    println!("cargo:rerun-if-changed=csrc/pystate.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import sysconfig,sys; print(sysconfig.get_paths()['include']); print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_config_var('PY_CORE_CFLAGS') or ''); print(sysconfig.get_config_var('Py_GIL_DISABLED'))"])
        .output()
        .unwrap_or_else(|e| panic!("weft-pystate: cannot run {python} to find the Python headers: {e}"));
    assert!(out.status.success(), "weft-pystate: {python} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8 from python");
    let mut lines = text.lines();
    let include = lines.next().expect("include dir").to_owned();
    let version = lines.next().expect("version").to_owned();
    let core_cflags = lines.next().unwrap_or("").to_owned();
    let gil_disabled = lines.next().unwrap_or("None").to_owned();
    if let Err(why) = build_checks::check_interpreter(&python, &version, &gil_disabled) {
        panic!("{why}");
    }
    let mut build = cc::Build::new();
    // The interpreter's own -D_Py_* flags (Debian builds 3.14+ with -D_Py_TIER2=3
    // -D_Py_JIT). They are not in the flags extensions inherit, yet on 3.15 they
    // change _PyThreadStateImpl's layout: without them every field after the JIT
    // tracer state would be read 8 bytes off.
    for flag in core_cflags.split_whitespace().filter(|f| f.starts_with("-D_Py_")) {
        build.flag(flag);
    }
    build
        .file("csrc/pystate.c")
        .include(&include)
        .flag_if_supported("-std=c11")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(true)
        .opt_level(3)
        .compile("weft_pystate");
}
