//! The switch primitive for x86-64 System V on ELF targets (Linux, the BSDs).
//!
//! `weft_stack_switch(save, restore, ctx)`:
//! 1. pushes every callee-saved register (rbp, rbx, r12-r15) plus MXCSR and the
//!    x87 control word, so the current stack slice holds the whole machine
//!    context the SysV ABI asks a callee to preserve;
//! 2. calls `save(sp, ctx)`, which copies what must be kept of the live stack to
//!    the heap and returns the stack pointer of the target (null if the target
//!    has never run);
//! 3. if non-null: moves `rsp` there, calls `restore(ctx)` (it copies the
//!    target's slice back above the new `rsp`), pops the target's registers and
//!    returns 0 into the target's call of `weft_stack_switch`;
//!    if null: pops our own registers and returns 1: we keep running on this
//!    stack, now as the new coroutine.
//!
//! r12/r13 carry `restore` and `ctx` across the `save` call: they are
//! callee-saved, so `save` keeps them, and they were already pushed.
//!
//! The CFI follows every push and pop, so DWARF unwinders (a backtrace taken
//! inside `save` or `restore`) walk through this frame; after `mov rsp, rax` the
//! CFA rule describes the target's frame once `restore` has put its bytes back.
//! Apple targets (leading-underscore symbols, no `.type`) are not handled;
//! `arch/mod.rs` refuses them.
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl weft_stack_switch",
    ".type weft_stack_switch,@function",
    "weft_stack_switch:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbp, -16",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbx, -24",
    "push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r12, -32",
    "push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r13, -40",
    "push r14",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r14, -48",
    "push r15",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r15, -56",
    // 6 pushes after the return address: rsp is 8 mod 16; 8 more bytes align it
    // and hold MXCSR (4 bytes) and the x87 control word (2 bytes).
    "sub rsp, 8",
    ".cfi_adjust_cfa_offset 8",
    "stmxcsr [rsp]",
    "fnstcw [rsp + 4]",
    "mov r12, rsi",
    "mov r13, rdx",
    "mov rax, rdi",
    "mov rdi, rsp",
    "mov rsi, rdx",
    "call rax",
    "test rax, rax",
    "jz 2f",
    "mov rsp, rax",
    "mov rdi, r13",
    "call r12",
    "xor eax, eax",
    "jmp 3f",
    "2:",
    "mov eax, 1",
    "3:",
    "ldmxcsr [rsp]",
    "fldcw [rsp + 4]",
    "add rsp, 8",
    ".cfi_adjust_cfa_offset -8",
    "pop r15",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r15",
    "pop r14",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r14",
    "pop r13",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r13",
    "pop r12",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r12",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbx",
    "pop rbp",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbp",
    "ret",
    ".cfi_endproc",
    ".size weft_stack_switch, .-weft_stack_switch",
);
