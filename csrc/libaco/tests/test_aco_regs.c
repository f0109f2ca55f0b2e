/*
 * test_aco_regs.c - the switch keeps its ABI contract (acosw_<arch>.S):
 * every callee-saved register and SP survive a resume/yield on both sides.
 * (The floating-point control state: test_aco_fpenv.c.)
 *
 *   x86-64:  rbx rbp r12-r15, rsp
 *   aarch64: x19-x28 x29, sp, d8-d15
 *
 * The registers are set and read by a small assembly probe, not by C:
 * the compiler could otherwise keep a value in a register the switch
 * never touches, and the test would pass by luck.
 */
#include "aco.h"
#include "acotest.h"

/* ---- the probe -------------------------------------------------------------
 *
 * t_reg_probe(in, out, fn, arg) loads in[0..T_NREG) into the callee-saved
 * registers, calls fn(arg) (which switches away and back), then stores the
 * same registers into out[0..T_NREG), and SP before and after the call
 * into out[T_NREG] and out[T_NREG + 1].  It saves and restores the
 * registers it uses, so it is itself ABI-conforming.  Its frame lives on
 * the calling coroutine's stack, so it also travels through the
 * save-stack copy when another coroutine takes the share stack.
 */
#if defined(__x86_64__)

#define T_NREG 6
static const char *const t_reg_names[T_NREG] = {"rbx", "rbp", "r12",
                                                "r13", "r14", "r15"};
__asm__(
    ".text\n"
    ".type t_reg_probe, @function\n"
    ".p2align 4\n"
    "t_reg_probe:\n"                /* rdi in, rsi out, rdx fn, rcx arg */
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  pushq %rsi\n"                /* 7 pushes + return address: aligned */
    "  movq  %rsp, 48(%rsi)\n"      /* out[6] = SP before */
    "  movq  0(%rdi), %rbx\n"
    "  movq  8(%rdi), %rbp\n"
    "  movq  16(%rdi), %r12\n"
    "  movq  24(%rdi), %r13\n"
    "  movq  32(%rdi), %r14\n"
    "  movq  40(%rdi), %r15\n"
    "  movq  %rcx, %rdi\n"
    "  call  *%rdx\n"
    "  movq  (%rsp), %rsi\n"
    "  movq  %rbx, 0(%rsi)\n"
    "  movq  %rbp, 8(%rsi)\n"
    "  movq  %r12, 16(%rsi)\n"
    "  movq  %r13, 24(%rsi)\n"
    "  movq  %r14, 32(%rsi)\n"
    "  movq  %r15, 40(%rsi)\n"
    "  movq  %rsp, 56(%rsi)\n"      /* out[7] = SP after */
    "  addq  $8, %rsp\n"
    "  popq  %r15\n"
    "  popq  %r14\n"
    "  popq  %r13\n"
    "  popq  %r12\n"
    "  popq  %rbx\n"
    "  popq  %rbp\n"
    "  ret\n"
    ".size t_reg_probe, .-t_reg_probe\n");

#elif defined(__aarch64__)

#define T_NREG 19
static const char *const t_reg_names[T_NREG] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
    "x29", "d8",  "d9",  "d10", "d11", "d12", "d13", "d14", "d15"};
__asm__(
    ".text\n"
    ".type t_reg_probe, %function\n"
    ".p2align 4\n"
    "t_reg_probe:\n"                /* x0 in, x1 out, x2 fn, x3 arg */
    "  sub   sp, sp, #176\n"
    "  stp   x29, x30, [sp, #0]\n"
    "  stp   x19, x20, [sp, #16]\n"
    "  stp   x21, x22, [sp, #32]\n"
    "  stp   x23, x24, [sp, #48]\n"
    "  stp   x25, x26, [sp, #64]\n"
    "  stp   x27, x28, [sp, #80]\n"
    "  stp   d8, d9, [sp, #96]\n"
    "  stp   d10, d11, [sp, #112]\n"
    "  stp   d12, d13, [sp, #128]\n"
    "  stp   d14, d15, [sp, #144]\n"
    "  str   x1, [sp, #160]\n"
    "  mov   x9, sp\n"
    "  str   x9, [x1, #152]\n"      /* out[19] = SP before */
    "  ldp   x19, x20, [x0, #0]\n"
    "  ldp   x21, x22, [x0, #16]\n"
    "  ldp   x23, x24, [x0, #32]\n"
    "  ldp   x25, x26, [x0, #48]\n"
    "  ldp   x27, x28, [x0, #64]\n"
    "  ldr   x29, [x0, #80]\n"
    "  ldp   d8, d9, [x0, #88]\n"
    "  ldp   d10, d11, [x0, #104]\n"
    "  ldp   d12, d13, [x0, #120]\n"
    "  ldp   d14, d15, [x0, #136]\n"
    "  mov   x0, x3\n"
    "  blr   x2\n"
    "  ldr   x1, [sp, #160]\n"
    "  stp   x19, x20, [x1, #0]\n"
    "  stp   x21, x22, [x1, #16]\n"
    "  stp   x23, x24, [x1, #32]\n"
    "  stp   x25, x26, [x1, #48]\n"
    "  stp   x27, x28, [x1, #64]\n"
    "  str   x29, [x1, #80]\n"
    "  stp   d8, d9, [x1, #88]\n"
    "  stp   d10, d11, [x1, #104]\n"
    "  stp   d12, d13, [x1, #120]\n"
    "  stp   d14, d15, [x1, #136]\n"
    "  mov   x9, sp\n"
    "  str   x9, [x1, #160]\n"      /* out[20] = SP after */
    "  ldp   x29, x30, [sp, #0]\n"
    "  ldp   x19, x20, [sp, #16]\n"
    "  ldp   x21, x22, [sp, #32]\n"
    "  ldp   x23, x24, [sp, #48]\n"
    "  ldp   x25, x26, [sp, #64]\n"
    "  ldp   x27, x28, [sp, #80]\n"
    "  ldp   d8, d9, [sp, #96]\n"
    "  ldp   d10, d11, [sp, #112]\n"
    "  ldp   d12, d13, [sp, #128]\n"
    "  ldp   d14, d15, [sp, #144]\n"
    "  add   sp, sp, #176\n"
    "  ret\n"
    ".size t_reg_probe, .-t_reg_probe\n");

#else
#error "test_aco_regs: unsupported architecture"
#endif

void t_reg_probe(const uint64_t *in, uint64_t *out, void (*fn)(void *),
                 void *arg) __asm__("t_reg_probe");

/* A value no register would hold by accident: who, which round, which
 * register. */
static uint64_t pattern(unsigned who, unsigned round, unsigned reg) {
  return 0xa5c3000000000000ull ^ ((uint64_t)who << 40) ^
         ((uint64_t)round << 16) ^ ((uint64_t)reg << 8) ^ (reg * 0x11u);
}

/* Loads who's patterns, runs fn(arg) through the probe, and checks that
 * every register and SP came back. */
static void probe_check(unsigned who, unsigned round, void (*fn)(void *),
                        void *arg) {
  uint64_t in[T_NREG], out[T_NREG + 2];
  for (unsigned r = 0; r < T_NREG; r++) in[r] = pattern(who, round, r);
  memset(out, 0, sizeof(out));
  t_reg_probe(in, out, fn, arg);
  for (unsigned r = 0; r < T_NREG; r++)
    T_CHECKF(out[r] == in[r], "%s of %s, round %u: %#llx, want %#llx",
             t_reg_names[r], who == 0 ? "main" : "a coroutine", round,
             (unsigned long long)out[r], (unsigned long long)in[r]);
  T_CHECKF(out[T_NREG] == out[T_NREG + 1], "SP of %u, round %u: %#llx, "
           "want %#llx", who, round, (unsigned long long)out[T_NREG + 1],
           (unsigned long long)out[T_NREG]);
}

static aco_t *main_co;

static void setup(void) {
  if (main_co == NULL) {
    aco_thread_init(NULL);
    main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  }
}

static void do_resume(void *co) { aco_resume(co); }
static void do_yield(void *unused) {
  (void)unused;
  aco_yield();
}

/* ---- callee-saved registers and SP ------------------------------------------ */

#define T_ROUNDS 50

typedef struct {
  unsigned who;
  int rounds;
  int exit_after; /* rounds before aco_exit; 0: run until destroyed */
} probe_arg_t;

static void probe_fn(void) {
  probe_arg_t *a = aco_get_arg();
  for (unsigned r = 0;; r++) {
    probe_check(a->who, r, do_yield, NULL);
    if (++a->rounds == a->exit_after) aco_exit();
  }
}

static void test_callee_saved(void) {
  setup();
  /* two coroutines on one share stack (every resume copies) that are
   * destroyed while suspended, and one alone that ends with aco_exit, so
   * main's registers must also survive the switch out of aco_exit */
  aco_share_stack_t *ss1 = aco_share_stack_new(0);
  aco_share_stack_t *ss2 = aco_share_stack_new(0);
  probe_arg_t args[3] = {{1, 0, 0}, {2, 0, 0}, {3, 0, T_ROUNDS}};
  aco_t *co[3] = {aco_create(main_co, ss1, 0, probe_fn, &args[0]),
                  aco_create(main_co, ss1, 0, probe_fn, &args[1]),
                  aco_create(main_co, ss2, 0, probe_fn, &args[2])};
  for (unsigned r = 0; r <= T_ROUNDS; r++) {
    for (int i = 0; i < 3; i++) {
      probe_check(0, r * 3 + (unsigned)i, do_resume, co[i]);
      T_EQ(args[i].rounds, (int)r);
      T_EQ(co[i]->is_end, i == 2 && r == T_ROUNDS);
    }
  }
  T_CHECK(co[0]->save_stack.ct_restore > 0); /* the copy path ran */
  for (int i = 0; i < 3; i++) aco_destroy(co[i]);
  aco_share_stack_destroy(ss1);
  aco_share_stack_destroy(ss2);
}

T_MAIN({"callee_saved", test_callee_saved})
