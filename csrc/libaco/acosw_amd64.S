/*
 * acosw_amd64.S - the x86-64 context switch (System V AMD64 psABI).
 *
 *   void acosw(aco_t *from, aco_t *to)      rdi = from, rsi = to
 *
 * Saves into from->reg[] what the psABI says a callee must preserve
 * (3.2.1 "Registers": rbx, rbp, r12-r15, rsp; 3.2.3: the x87 control word
 * and MXCSR control bits), loads the same from to->reg[] and jumps to
 * to's resume pc.  Offsets come from acosw_layout.h and are checked
 * against aco_t in aco.c.
 *
 * SP is stored as it will be after this call returns (return address
 * popped) and the return address as the resume pc: a suspended
 * coroutine's live stack is exactly [reg[SP], top) and holds nothing of
 * acosw's.
 *
 * acosw also sets aco_gtls_co (aco.h) to `to`, so the thread's running
 * coroutine is always the one acosw entered, whoever called it, and
 * aco_resume has nothing left to do after the switch (aco.c,
 * aco_switch_in).  The variable is reached with the initial-exec TLS
 * model: one GOT load (relaxed to a constant in an executable) and a
 * %fs-relative store.
 *
 * It resumes `to` with an indirect jump, not a return: a call into acosw
 * is never matched by a return (the return-address predictor only fills),
 * and aco_resume tail-calls it, so a loop of resumes and yields
 * mispredicts no return; the first return out of the loop does, once.  A fresh coroutine's SP points at a slot holding the protector
 * address, so its function is entered as if called from the protector.
 *
 * Caller-saved registers need no saving: acosw is a real call, so the
 * compiler has already assumed they are clobbered.  The direction flag is
 * clear at every call by the psABI, so it needs no saving either.
 *
 * Floating-point state (aco.h says what users see).  The control bits of
 * MXCSR and the x87 control word are per coroutine: from's are stored
 * into from (stmxcsr, fnstcw) and compared with to's in registers; only
 * when a control bit differs are to's loaded.  Loading MXCSR is what
 * costs: measured on a 2-core Xeon VM, a stmxcsr/ldmxcsr pair costs 3-4
 * ns when the value stays the same and about 80 ns when it changes, and
 * the stored words nearly always differ in the status flags (bits 0-5,
 * set by any floating-point work), so libaco's unconditional ldmxcsr pays
 * that at most switches; the compare costs about 1 ns.  The sticky status flags are the thread's:
 * the compare ignores them and a load keeps the current ones (to's
 * control bits, the thread's flags).  The x87 status word is never
 * touched.  Defining ACO_CONFIG_SHARE_FPU_MXCSR_ENV leaves all of it
 * alone.
 */
#include "acosw_layout.h"

#if defined(__x86_64__)

        .text
        .globl  acosw
        .type   acosw, @function
        .p2align 4
acosw:
        movq    (%rsp), %rax                /* from's resume pc */
        leaq    8(%rsp), %rdx               /* from's SP after return */
        movq    ACO_OFF_PC(%rsi), %rcx      /* to's resume pc, early */
        movq    ACO_OFF_SP(%rsi), %r8
        movq    %rax, ACO_OFF_PC(%rdi)
        movq    %rdx, ACO_OFF_SP(%rdi)
        movq    %rbx, ACO_OFF_RBX(%rdi)
        movq    %rbp, ACO_OFF_RBP(%rdi)
        movq    %r12, ACO_OFF_R12(%rdi)
        movq    %r13, ACO_OFF_R13(%rdi)
        movq    %r14, ACO_OFF_R14(%rdi)
        movq    %r15, ACO_OFF_R15(%rdi)
        /* aco_gtls_co = to (initial-exec TLS: aco.h) */
        movq    aco_gtls_co@gottpoff(%rip), %r9
        movq    %rsi, %fs:(%r9)
#ifndef ACO_CONFIG_SHARE_FPU_MXCSR_ENV
        /* Save from's MXCSR and x87 control word; load to's only where
         * their control bits differ (see "Floating-point state" above):
         * one branch, normally not taken. */
        stmxcsr ACO_OFF_MXCSR(%rdi)
        fnstcw  ACO_OFF_FPUCW(%rdi)
        movl    ACO_OFF_MXCSR(%rdi), %eax
        movzwl  ACO_OFF_FPUCW(%rdi), %edx
        xorl    ACO_OFF_MXCSR(%rsi), %eax
        xorw    ACO_OFF_FPUCW(%rsi), %dx
        andl    $ACO_MXCSR_CONTROL, %eax    /* ignore the status flags */
        orl     %edx, %eax
        jnz     2f
1:
#endif
        movq    ACO_OFF_RBX(%rsi), %rbx
        movq    ACO_OFF_RBP(%rsi), %rbp
        movq    ACO_OFF_R12(%rsi), %r12
        movq    ACO_OFF_R13(%rsi), %r13
        movq    ACO_OFF_R14(%rsi), %r14
        movq    ACO_OFF_R15(%rsi), %r15
        movq    %r8, %rsp
        jmpq    *%rcx
#ifndef ACO_CONFIG_SHARE_FPU_MXCSR_ENV
2:      /* MXCSR: to's control bits with the thread's current status
         * flags, written back to to's slot (it holds to's state until to
         * switches out again) and loaded from there. */
        movl    ACO_OFF_MXCSR(%rdi), %eax
        movl    ACO_OFF_MXCSR(%rsi), %edx
        xorl    %eax, %edx
        andl    $ACO_MXCSR_CONTROL, %edx
        jz      3f
        xorl    %edx, %eax
        movl    %eax, ACO_OFF_MXCSR(%rsi)
        ldmxcsr ACO_OFF_MXCSR(%rsi)
3:      /* the x87 control word has no status bits */
        movzwl  ACO_OFF_FPUCW(%rdi), %eax
        cmpw    ACO_OFF_FPUCW(%rsi), %ax
        je      1b
        fldcw   ACO_OFF_FPUCW(%rsi)
        jmp     1b
#endif
        .size   acosw, .-acosw

/*
 * A coroutine function that returns pops the protector address and lands
 * here, with rsp at the 16-byte aligned top of the share stack.  Call the
 * C protector (last word + abort message); it never returns.
 */
        .globl  aco_funcp_protector_asm
        .type   aco_funcp_protector_asm, @function
        .p2align 4
aco_funcp_protector_asm:
        andq    $-16, %rsp
        call    aco_funcp_protector@PLT
        ud2
        .size   aco_funcp_protector_asm, .-aco_funcp_protector_asm

/*
 * aco_call_on_stack(sp, fn, arg): calls fn(arg) with rsp = sp (16-byte
 * aligned, so the callee sees the psABI's alignment after the call) and
 * returns on the caller's stack.  rbp keeps the way back and makes the
 * frame chain of the callee lead to our caller.
 */
        .globl  aco_call_on_stack
        .type   aco_call_on_stack, @function
        .p2align 4
aco_call_on_stack:
        .cfi_startproc
        pushq   %rbp
        .cfi_def_cfa_offset 16
        .cfi_offset %rbp, -16
        movq    %rsp, %rbp
        .cfi_def_cfa_register %rbp
        movq    %rdi, %rsp
        movq    %rdx, %rdi
        callq   *%rsi
        movq    %rbp, %rsp
        popq    %rbp
        .cfi_def_cfa %rsp, 8
        ret
        .cfi_endproc
        .size   aco_call_on_stack, .-aco_call_on_stack

#endif /* __x86_64__ */

/* no executable stack for whoever links this */
        .section .note.GNU-stack,"",%progbits
