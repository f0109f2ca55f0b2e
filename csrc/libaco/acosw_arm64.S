/*
 * acosw_arm64.S - the AArch64 context switch (AAPCS64, Linux/ELF).
 *
 *   void acosw(aco_t *from, aco_t *to)      x0 = from, x1 = to
 *
 * Saves into from->reg[] what AAPCS64 says a callee must preserve, loads
 * the same from to->reg[] and continues at to's resume pc.  Offsets come
 * from acosw_layout.h and are checked against aco_t in aco.c.
 *
 *   slot  offset             holds         why (AAPCS64 2023Q3)
 *   ----  -----------------  ------------  --------------------------------
 *    0    ACO_OFF_SP     0   sp            6.1.1: SP is preserved by a call
 *    1    ACO_OFF_PC     8   x30 (lr)      resume pc: where acosw returns
 *    2-11 ACO_OFF_X19   16   x19 .. x28    6.1.1: callee-saved (five pairs,
 *                                          X21 32, X23 48, X25 64, X27 80)
 *   12    ACO_OFF_X29   96   x29 (fp)      6.1.1: frame pointer, callee-saved
 *   13-20 ACO_OFF_D8   104   d8 .. d15     6.1.2: low 64 bits of v8-v15
 *                                          (D10 120, D12 136, D14 152)
 *   21    ACO_OFF_FPCR 168   FPCR          6.1.2 FPCR paragraph: rounding,
 *                                          flush-to-zero, default-NaN and
 *                                          trap-enable modes
 *
 * SP and the pc share slots 0-1 so one ldp/stp moves both.
 *
 * SP is stored as it is at entry: acosw is a leaf that never touches the
 * stack, and the return address lives in x30, not in memory.  So the SP
 * saved for a suspended coroutine is exactly the SP its caller has after
 * the call returns, and its live stack is [reg[SP], top) with nothing of
 * acosw's in it.  AArch64 Linux has no red zone: no byte below SP is live,
 * so copying [SP, top) out and back (aco.c) loses nothing.  SP is 16-byte
 * aligned here because every public call site is (AAPCS64 stack
 * constraints), so a resumed context gets an aligned SP back.
 *
 * What is not saved, and why:
 *  - x0-x18 and v0-v7, v16-v31 (all 128 bits), the upper 64 bits of
 *    v8-v15, NZCV and FPSR: caller-saved or not preserved across a call
 *    (6.1.1, 6.1.2).  acosw is a real call, so the compiler has already
 *    assumed they are clobbered.  FPSR holds only cumulative exception
 *    flags, which are the thread's, not a coroutine's (as MXCSR's status
 *    flags on x86-64; aco.h).  x18 is the platform register; Linux
 *    treats it as a temporary.  SVE/SME state beyond d8-d15 is
 *    caller-saved under the base PCS acosw follows, and PSTATE.SM is 0
 *    at a call to it.
 *  - TPIDR_EL0 (TLS): coroutines never move between threads.
 *  - FPCR when ACO_CONFIG_SHARE_FPU_MXCSR_ENV is defined: then all
 *    coroutines of a thread share the thread's FP control.  Otherwise it
 *    is per coroutine, like libaco's MXCSR/x87 control word on x86-64
 *    (AAPCS64 treats its mode bits as global state that only support
 *    functions such as fesetround change; we make "global" mean "of this
 *    coroutine").  It is written only when it differs, because msr fpcr
 *    is a serializing, slow write on several cores and the values are
 *    nearly always equal; mrs fpcr is cheap.
 *
 * Resuming: `br x30`, not `ret`, in the default build.  acosw enters one
 * context and leaves to another, so the return-address stack (RAS) can't
 * be right either way.  `ret` pops from's own return address and
 * mispredicts at once, and leaves the RAS one entry short for to's
 * context, so to's next return mispredicts as well: two per switch.  `br`
 * is predicted by the indirect predictor, whose targets here are a few
 * sites (the return points of aco_resume's callers, since aco_resume
 * tail-calls acosw; the coroutines' yield sites; the entry stub) told
 * apart by the path that led here.  A call into acosw is never matched by
 * a return (the RAS only fills), so a loop of resumes mispredicts no
 * return; the first return out of it does, once.
 * With Branch Target Identification (-mbranch-protection=bti/standard,
 * __ARM_FEATURE_BTI_DEFAULT) a `br` may only land on a BTI landing pad,
 * and a return site after a `bl` is none: `br x30` would raise SIGILL in a
 * BTI-enforced binary.  That build uses `ret`, which BTI does not check,
 * marks acosw's entry with `bti c` (it can be reached through a PLT) and
 * emits the GNU property note so linking this file keeps BTI on.
 *
 * A fresh coroutine: aco_create sets reg[PC] = aco_co_entry_asm,
 * reg[X19] = the function to run, reg[SP] = share_stack->align_retptr
 * (its 16-byte aligned top) and reg[FPCR] = the thread's initial FPCR;
 * the rest is zero, so x29 = 0 ends frame-pointer chains there.
 */
#include "acosw_layout.h"

#if defined(__aarch64__)

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define ACO_BTI_C bti c
#define ACO_RESUME ret x30
#define ACO_GNU_PROPERTY_BTI 1
#else
#define ACO_BTI_C
#define ACO_RESUME br x30
#define ACO_GNU_PROPERTY_BTI 0
#endif
#if defined(__ARM_FEATURE_PAC_DEFAULT) && __ARM_FEATURE_PAC_DEFAULT
/* nothing here signs lr (no function spills it), so pac-ret needs no
 * code; the note only says so */
#define ACO_GNU_PROPERTY_PAC 2
#else
#define ACO_GNU_PROPERTY_PAC 0
#endif

        .text
        .globl  acosw
        .type   acosw, %function
        .p2align 4
acosw:
        .cfi_startproc
        ACO_BTI_C
        mov     x9, sp
        stp     x9, x30,  [x0, #ACO_OFF_SP]   /* SP at entry; lr = resume pc */
        stp     x19, x20, [x0, #ACO_OFF_X19]
        stp     x21, x22, [x0, #ACO_OFF_X21]
        stp     x23, x24, [x0, #ACO_OFF_X23]
        stp     x25, x26, [x0, #ACO_OFF_X25]
        stp     x27, x28, [x0, #ACO_OFF_X27]
        str     x29,      [x0, #ACO_OFF_X29]
        stp     d8, d9,   [x0, #ACO_OFF_D8]
        stp     d10, d11, [x0, #ACO_OFF_D10]
        stp     d12, d13, [x0, #ACO_OFF_D12]
        stp     d14, d15, [x0, #ACO_OFF_D14]
        /* aco_gtls_co = to (initial-exec TLS, as on amd64) */
        mrs     x12, tpidr_el0
        adrp    x13, :gottprel:aco_gtls_co
        ldr     x13, [x13, #:gottprel_lo12:aco_gtls_co]
        str     x1, [x12, x13]
#ifndef ACO_CONFIG_SHARE_FPU_MXCSR_ENV
        /* Save FPCR always (mrs is cheap); write to's only when it
         * differs (msr fpcr is slow).  Out of line, like amd64's ldmxcsr. */
        mrs     x10, fpcr
        str     x10,      [x0, #ACO_OFF_FPCR]
        ldr     x11,      [x1, #ACO_OFF_FPCR]
        cmp     x10, x11
        b.ne    2f
1:
#endif
        ldp     x19, x20, [x1, #ACO_OFF_X19]
        ldp     x21, x22, [x1, #ACO_OFF_X21]
        ldp     x23, x24, [x1, #ACO_OFF_X23]
        ldp     x25, x26, [x1, #ACO_OFF_X25]
        ldp     x27, x28, [x1, #ACO_OFF_X27]
        ldr     x29,      [x1, #ACO_OFF_X29]
        ldp     d8, d9,   [x1, #ACO_OFF_D8]
        ldp     d10, d11, [x1, #ACO_OFF_D10]
        ldp     d12, d13, [x1, #ACO_OFF_D12]
        ldp     d14, d15, [x1, #ACO_OFF_D14]
        ldp     x9, x30,  [x1, #ACO_OFF_SP]
        mov     sp, x9
        ACO_RESUME                            /* see the header: br vs ret */
#ifndef ACO_CONFIG_SHARE_FPU_MXCSR_ENV
2:
        msr     fpcr, x11
        b       1b
#endif
        .cfi_endproc
        .size   acosw, .-acosw

/*
 * aco_co_entry_asm: a fresh coroutine's first resume lands here, with sp
 * at the aligned top of its share stack and x19 = its function.  `blr`
 * calls it with lr = the address of the next instruction, which is
 * aco_funcp_protector_asm itself (the two must stay adjacent, checked
 * below): a coroutine function that returns lands in the protector.  blr
 * rather than br also suits BTI (a C function's `bti c` accepts blr, not
 * br via x19) and pushes the protector onto the RAS.
 *
 * aco_funcp_protector_asm: reached when the coroutine function returns,
 * with sp back at the share stack's top.  Re-align sp to 16 anyway (the
 * C call needs it; a corrupted function might not have restored it) and
 * call the C protector (last word + abort message); it never returns.
 *
 * lr is undefined in the CFI, so debuggers and unwinders stop here: this
 * is the outermost frame of a coroutine.
 */
        .globl  aco_co_entry_asm
        .type   aco_co_entry_asm, %function
        .globl  aco_funcp_protector_asm
        .type   aco_funcp_protector_asm, %function
        .p2align 4
        .cfi_startproc
        .cfi_undefined x30
aco_co_entry_asm:
        blr     x19
        .size   aco_co_entry_asm, .-aco_co_entry_asm
aco_funcp_protector_asm:
        mov     x9, sp
        and     sp, x9, #~15
        bl      aco_funcp_protector
        udf     #0
        .size   aco_funcp_protector_asm, .-aco_funcp_protector_asm
        .cfi_endproc
        .if     aco_funcp_protector_asm - aco_co_entry_asm - 4
        .error  "aco_co_entry_asm's blr must be followed by aco_funcp_protector_asm"
        .endif

/*
 * aco_call_on_stack(sp, fn, arg): calls fn(arg) with SP = sp (16-byte
 * aligned) and returns on the caller's stack.  x29/x30 are kept in the
 * caller's frame, which the callee's frame chain then points to.
 */
        .text
        .globl  aco_call_on_stack
        .type   aco_call_on_stack, %function
        .p2align 4
aco_call_on_stack:
        .cfi_startproc
        ACO_BTI_C
        stp     x29, x30, [sp, #-16]!
        .cfi_def_cfa_offset 16
        .cfi_offset 29, -16
        .cfi_offset 30, -8
        mov     x29, sp
        .cfi_def_cfa_register 29
        mov     sp, x0
        mov     x0, x2
        blr     x1
        mov     sp, x29
        ldp     x29, x30, [sp], #16
        .cfi_def_cfa sp, 0
        ret
        .cfi_endproc
        .size   aco_call_on_stack, .-aco_call_on_stack

#if ACO_GNU_PROPERTY_BTI || ACO_GNU_PROPERTY_PAC
/* GNU_PROPERTY_AARCH64_FEATURE_1_AND: without it the linker turns BTI
 * off for the whole program when this object is linked in. */
        .section .note.gnu.property, "a"
        .p2align 3
        .word   4                             /* n_namesz: "GNU\0" */
        .word   16                            /* n_descsz */
        .word   5                             /* NT_GNU_PROPERTY_TYPE_0 */
        .asciz  "GNU"
        .word   0xc0000000                    /* ..._AARCH64_FEATURE_1_AND */
        .word   4                             /* pr_datasz */
        .word   ACO_GNU_PROPERTY_BTI | ACO_GNU_PROPERTY_PAC
        .word   0                             /* pad to 8 */
#endif

#endif /* __aarch64__ */

/* no executable stack for whoever links this */
        .section .note.GNU-stack,"",%progbits
