//! The switch primitive for AArch64 AAPCS64 on ELF targets (Linux, the BSDs).
//!
//! Same contract as the x86-64 file: save x19-x28, the frame record x29/x30,
//! d8-d15 (the low halves of v8-v15, all AAPCS64 asks a callee to keep) and
//! FPCR on the stack; call `save(sp, ctx)`; if it returns a stack pointer, move
//! `sp` there, call `restore(ctx)` and return 0 as the target; else return 1 on
//! this stack. x19/x20 carry `restore` and `ctx` across the `save` call: they
//! are callee-saved, so `save` keeps them, and they were already stored.
//!
//! The frame is 176 bytes, a multiple of 16, so `sp` stays 16-byte aligned as
//! AAPCS64 (and Linux's SP alignment check) requires: the `sp` handed to `save`
//! is the one a target later resumes with. x29 is pointed at the frame record,
//! so frame-pointer walkers see this frame, and the CFI describes every saved
//! register, so DWARF unwinders (backtraces taken inside `save`) walk through.
//! x18 is not touched: Linux leaves it to the caller.
//!
//! No BTI landing pad: the routine is only reached by a direct `bl` from Rust.
//! Return addresses signed with pointer authentication should stay valid across
//! a switch, since stack slicing puts every frame back at its own address (and
//! so under the same SP modifier); untested, as nothing here is built with
//! branch protection.
//!
//! Tested under qemu-user (scripts/test-aarch64.sh): the crate's unit tests,
//! including the callee-saved-register and backtrace tests, for
//! aarch64-unknown-linux-gnu. Not tested on Apple targets, whose symbol naming
//! (a leading underscore) this file does not handle; `arch/mod.rs` refuses them.
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl weft_stack_switch",
    ".type weft_stack_switch,%function",
    "weft_stack_switch:",
    ".cfi_startproc",
    "sub sp, sp, #176",
    ".cfi_def_cfa_offset 176",
    "stp x29, x30, [sp, #0]",
    ".cfi_offset x29, -176",
    ".cfi_offset x30, -168",
    "mov x29, sp",
    "stp x19, x20, [sp, #16]",
    ".cfi_offset x19, -160",
    ".cfi_offset x20, -152",
    "stp x21, x22, [sp, #32]",
    ".cfi_offset x21, -144",
    ".cfi_offset x22, -136",
    "stp x23, x24, [sp, #48]",
    ".cfi_offset x23, -128",
    ".cfi_offset x24, -120",
    "stp x25, x26, [sp, #64]",
    ".cfi_offset x25, -112",
    ".cfi_offset x26, -104",
    "stp x27, x28, [sp, #80]",
    ".cfi_offset x27, -96",
    ".cfi_offset x28, -88",
    "stp d8, d9, [sp, #96]",
    ".cfi_offset d8, -80",
    ".cfi_offset d9, -72",
    "stp d10, d11, [sp, #112]",
    ".cfi_offset d10, -64",
    ".cfi_offset d11, -56",
    "stp d12, d13, [sp, #128]",
    ".cfi_offset d12, -48",
    ".cfi_offset d13, -40",
    "stp d14, d15, [sp, #144]",
    ".cfi_offset d14, -32",
    ".cfi_offset d15, -24",
    "mrs x9, fpcr",
    "str x9, [sp, #160]",
    "mov x19, x1",
    "mov x20, x2",
    "mov x9, x0",
    "mov x0, sp",
    "mov x1, x2",
    "blr x9",
    // From here on the CFA rule (sp + 176) describes the target's frame once
    // `restore` has put its bytes back.
    "cbz x0, 2f",
    "mov sp, x0",
    "mov x0, x20",
    "blr x19",
    "mov x0, #0",
    "b 3f",
    "2:",
    "mov x0, #1",
    "3:",
    "ldr x9, [sp, #160]",
    "msr fpcr, x9",
    "ldp d14, d15, [sp, #144]",
    "ldp d12, d13, [sp, #128]",
    "ldp d10, d11, [sp, #112]",
    "ldp d8, d9, [sp, #96]",
    "ldp x27, x28, [sp, #80]",
    "ldp x25, x26, [sp, #64]",
    "ldp x23, x24, [sp, #48]",
    "ldp x21, x22, [sp, #32]",
    "ldp x19, x20, [sp, #16]",
    "ldp x29, x30, [sp, #0]",
    "add sp, sp, #176",
    ".cfi_def_cfa_offset 0",
    ".cfi_restore x29",
    ".cfi_restore x30",
    ".cfi_restore x19",
    ".cfi_restore x20",
    ".cfi_restore x21",
    ".cfi_restore x22",
    ".cfi_restore x23",
    ".cfi_restore x24",
    ".cfi_restore x25",
    ".cfi_restore x26",
    ".cfi_restore x27",
    ".cfi_restore x28",
    ".cfi_restore d8",
    ".cfi_restore d9",
    ".cfi_restore d10",
    ".cfi_restore d11",
    ".cfi_restore d12",
    ".cfi_restore d13",
    ".cfi_restore d14",
    ".cfi_restore d15",
    "ret",
    ".cfi_endproc",
    ".size weft_stack_switch, .-weft_stack_switch",
);
