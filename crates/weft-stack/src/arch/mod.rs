//! One file per (architecture, ABI). An unknown target fails the build: a port is
//! one new file and one `cfg` line here. Both files are ELF assembly (`.type`,
//! unprefixed symbol names), so Apple targets are refused too until a Mach-O
//! variant exists.
use core::ffi::c_void;

#[cfg(all(target_arch = "x86_64", not(any(windows, target_vendor = "apple"))))]
mod x86_64_sysv;
#[cfg(all(target_arch = "aarch64", not(any(windows, target_vendor = "apple"))))]
mod aarch64_aapcs;

#[cfg(not(any(
    all(target_arch = "x86_64", not(any(windows, target_vendor = "apple"))),
    all(target_arch = "aarch64", not(any(windows, target_vendor = "apple")))
)))]
compile_error!("weft-stack has no stack switch for this target; add one under src/arch/");

/// Called on the old stack with its lowest live address; returns where the
/// target's stack pointer must go, or null when the target has never run.
pub type SaveFn = unsafe extern "C" fn(sp: *mut u8, ctx: *mut c_void) -> *mut u8;
/// Called on the target's stack pointer, before its registers are popped.
pub type RestoreFn = unsafe extern "C" fn(ctx: *mut c_void);

unsafe extern "C" {
    /// Returns 0 when resumed as an existing coroutine, 1 when now running as a
    /// coroutine that had never run (on the caller's own stack).
    pub fn weft_stack_switch(save: SaveFn, restore: RestoreFn, ctx: *mut c_void) -> usize;
}
