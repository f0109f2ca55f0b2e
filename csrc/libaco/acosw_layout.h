/*
 * acosw_layout.h - the contract between aco.c and acosw_<arch>.S.
 *
 * acosw(from, to) saves the callee-saved machine state of the running
 * context into from->reg[] and loads to->reg[].  reg[] is the first member
 * of aco_t, so the offsets below are offsets into aco_t itself.  aco.c
 * checks every one of them with _Static_assert; change them here only.
 *
 * The register sets are exactly what each psABI says survives a call:
 *
 *  x86-64 (System V psABI 1.0, 3.2.1 / 3.2.3): rbx rbp r12-r15, rsp, the
 *    x87 control word and the MXCSR control bits.  We save rsp as it will
 *    be after acosw returns (the return address popped) and the return
 *    address as the resume pc, so a suspended coroutine's live stack is
 *    exactly [SP, top) with nothing of acosw's in it.
 *
 *  AArch64 (AAPCS64 2023Q3, 6.1.1 / 6.1.2): x19-x28, x29 (fp), x30 (lr),
 *    sp, the low 64 bits of v8-v15 (d8-d15) and FPCR.  x30 is the resume
 *    pc.
 *
 * This header is included by assembly: preprocessor definitions only.
 */
#ifndef ACOSW_LAYOUT_H
#define ACOSW_LAYOUT_H

#if defined(__x86_64__)

#define ACO_REG_NUM 8
#define ACO_REG_IDX_SP 0
#define ACO_REG_IDX_PC 1
#define ACO_OFF_SP 0
#define ACO_OFF_PC 8
#define ACO_OFF_RBX 16
#define ACO_OFF_RBP 24
#define ACO_OFF_R12 32
#define ACO_OFF_R13 40
#define ACO_OFF_R14 48
#define ACO_OFF_R15 56
/* right after reg[]: the floating-point control state, MXCSR (4 bytes,
 * stmxcsr) then the x87 control word (2 bytes, fnstcw); aco_t's is_end
 * and flags fill the word's last 2 bytes (acosw never touches them). */
#define ACO_OFF_MXCSR 64
#define ACO_OFF_FPUCW 68
/* MXCSR bits 0-5 are the sticky status flags; the rest is control
 * (DAZ, exception masks, rounding, FTZ; bits 16-31 are reserved, 0) */
#define ACO_MXCSR_CONTROL (~0x3f)

#elif defined(__aarch64__)

#define ACO_REG_NUM 22
#define ACO_REG_IDX_SP 0
#define ACO_REG_IDX_PC 1
#define ACO_OFF_SP 0
#define ACO_OFF_PC 8 /* x30 */
#define ACO_OFF_X19 16
#define ACO_OFF_X21 32
#define ACO_OFF_X23 48
#define ACO_OFF_X25 64
#define ACO_OFF_X27 80
#define ACO_OFF_X29 96 /* x29 alone: x19..x28 are five pairs above */
#define ACO_OFF_D8 104
#define ACO_OFF_D10 120
#define ACO_OFF_D12 136
#define ACO_OFF_D14 152
#define ACO_OFF_FPCR 168

#else
#error "aco: unsupported architecture (x86-64 and aarch64 are supported)"
#endif

#endif /* ACOSW_LAYOUT_H */
