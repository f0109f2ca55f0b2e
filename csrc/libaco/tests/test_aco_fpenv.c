/*
 * test_aco_fpenv.c - the floating-point environment across switches, as
 * aco.h ("Floating-point state") documents it:
 *
 *  - The control state is per coroutine: x86-64 MXCSR's control bits
 *    (DAZ, exception masks, rounding, FTZ) and the x87 control word
 *    (masks, precision, rounding); aarch64 FPCR (RMode, FZ, DN).  A
 *    coroutine keeps what it sets across its yields, also when it changes
 *    it late and other coroutines take its share stack in between; main
 *    and the other coroutines never see it; a new coroutine starts with
 *    the state of its thread at aco_thread_init.
 *  - The sticky status flags (MXCSR bits 0-5 and the x87 status word,
 *    FPSR) are the thread's: raised in one context they are seen in the
 *    next, cleared in one they are cleared for all, also across a switch
 *    that loads another control state.
 *
 * The state is set and read with the instructions themselves, and where
 * the runner models it, real arithmetic checks that the mode steers it.
 * What each runner models: everything natively (plain, asan, tsan); the
 * rounding bits only under valgrind (it reads back the rest as defaults,
 * computes SSE arithmetic to nearest and has no status flags); under qemu
 * FPCR's RMode, FZ and DN and the FPSR flags, not the trap enables.
 */
#include <fenv.h>

#include "aco.h"
#include "acotest.h"

static int on_valgrind(void) { return !strcmp(t_mode(), "valgrind"); }

#if defined(__x86_64__)

typedef struct {
  uint32_t mxcsr; /* control bits only (bits 6-15) */
  uint16_t x87;   /* control word */
} fpmode_t;

#define MXCSR_DAZ 0x0040u
#define MXCSR_ZM 0x0200u /* divide-by-zero exception mask */
#define MXCSR_RC_UP 0x4000u
#define MXCSR_RC_DOWN 0x2000u
#define MXCSR_RC_ZERO 0x6000u
#define MXCSR_FTZ 0x8000u
#define X87_ZM 0x0004u
#define X87_PC_SINGLE 0x0000u
#define X87_PC_DOUBLE 0x0200u
#define X87_PC_EXT 0x0300u
#define X87_RC_DOWN 0x0400u
#define X87_RC_UP 0x0800u
#define X87_RC_ZERO 0x0c00u
/* every exception masked (bits 0-5) and the reserved bit 6, which reads
 * as 1 */
#define X87_MASKS 0x007fu

/* the bits the runner models */
static uint32_t mxcsr_bits(void) { return on_valgrind() ? 0x6000u : 0xffc0u; }
static uint16_t x87_bits(void) { return on_valgrind() ? 0x0c00u : 0x0f3fu; }

static fpmode_t fpmode_get(void) {
  uint32_t m;
  uint16_t cw;
  __asm__ volatile("stmxcsr %0" : "=m"(m));
  __asm__ volatile("fnstcw %0" : "=m"(cw));
  return (fpmode_t){m & mxcsr_bits(), (uint16_t)(cw & x87_bits())};
}

static void fpmode_set(fpmode_t v) {
  uint32_t m;
  uint16_t cw;
  __asm__ volatile("stmxcsr %0" : "=m"(m));
  __asm__ volatile("fnstcw %0" : "=m"(cw));
  m = (m & ~mxcsr_bits()) | (v.mxcsr & mxcsr_bits());
  cw = (uint16_t)((cw & ~x87_bits()) | (v.x87 & x87_bits()));
  __asm__ volatile("ldmxcsr %0" : : "m"(m));
  __asm__ volatile("fldcw %0" : : "m"(cw));
}

static int fpmode_eq(fpmode_t a, fpmode_t b) {
  return (a.mxcsr & mxcsr_bits()) == (b.mxcsr & mxcsr_bits()) &&
         (a.x87 & x87_bits()) == (b.x87 & x87_bits());
}

#define FPMODE_FMT "MXCSR control %#x, x87 control %#x"
#define FPMODE_ARGS(v) (unsigned)(v).mxcsr, (unsigned)(v).x87

/* Distinct modes: every control field of both words takes another value
 * in at least one of them, one differs from the thread's in the x87 word
 * only and one in MXCSR only (the switch compares the two words apart).
 * Exceptions stay masked except divide-by-zero in one mode, which no
 * code raises while that mode is in force. */
static const fpmode_t modes[] = {
    {0x1f80u | MXCSR_RC_UP, X87_MASKS | X87_PC_DOUBLE | X87_RC_DOWN},
    {0x1f80u | MXCSR_RC_ZERO | MXCSR_FTZ | MXCSR_DAZ,
     X87_MASKS | X87_PC_SINGLE | X87_RC_UP},
    {(0x1f80u & ~MXCSR_ZM) | MXCSR_RC_DOWN, (X87_MASKS & ~X87_ZM) | X87_PC_EXT},
    {0x1f80u, X87_MASKS | X87_PC_SINGLE | X87_RC_ZERO}, /* x87 only */
    {0x1f80u | MXCSR_FTZ, X87_MASKS | X87_PC_EXT},      /* MXCSR only */
};

/* SSE rounding of the mode: 1 up, -1 down, 0 nearest or toward zero (the
 * two agree on 1/3 and -1/3) */
static int mode_rounding(fpmode_t v) {
  uint32_t rc = v.mxcsr & 0x6000u;
  return rc == MXCSR_RC_UP ? 1 : rc == MXCSR_RC_DOWN ? -1 : 0;
}
static int mode_flushes(fpmode_t v) { return (v.mxcsr & MXCSR_FTZ) != 0; }
static int mode_denormals_are_zero(fpmode_t v) {
  return (v.mxcsr & MXCSR_DAZ) != 0;
}

#elif defined(__aarch64__)

typedef struct {
  uint64_t fpcr;
} fpmode_t;

#define FPCR_RM_UP (1ull << 22)
#define FPCR_RM_DOWN (2ull << 22)
#define FPCR_RM_ZERO (3ull << 22)
#define FPCR_FZ (1ull << 24)
#define FPCR_DN (1ull << 25)
#define FPCR_BITS (3ull << 22 | FPCR_FZ | FPCR_DN)

static fpmode_t fpmode_get(void) {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return (fpmode_t){v & FPCR_BITS};
}

static void fpmode_set(fpmode_t m) {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  v = (v & ~FPCR_BITS) | (m.fpcr & FPCR_BITS);
  __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

static int fpmode_eq(fpmode_t a, fpmode_t b) {
  return (a.fpcr & FPCR_BITS) == (b.fpcr & FPCR_BITS);
}

#define FPMODE_FMT "FPCR mode bits %#llx"
#define FPMODE_ARGS(m) (unsigned long long)(m).fpcr

static const fpmode_t modes[] = {
    {FPCR_RM_UP | FPCR_FZ}, {FPCR_RM_ZERO | FPCR_DN}, {FPCR_RM_DOWN},
    {FPCR_FZ},              {FPCR_DN | FPCR_RM_UP},
};

static int mode_rounding(fpmode_t m) {
  uint64_t r = m.fpcr & (3ull << 22);
  return r == FPCR_RM_UP ? 1 : r == FPCR_RM_DOWN ? -1 : 0;
}
/* FZ flushes denormal results and operands alike */
static int mode_flushes(fpmode_t m) { return (m.fpcr & FPCR_FZ) != 0; }
static int mode_denormals_are_zero(fpmode_t m) { return mode_flushes(m); }

#else
#error "test_aco_fpenv: unsupported architecture"
#endif

#define NMODES (int)(sizeof(modes) / sizeof(modes[0]))

#define T_FPMODE_EQ(got, want, ...)                                        \
  do {                                                                     \
    fpmode_t t_g_ = (got), t_w_ = (want);                                  \
    if (!fpmode_eq(t_g_, t_w_)) {                                          \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, ": " FPMODE_FMT ", want " FPMODE_FMT "\n",           \
              FPMODE_ARGS(t_g_), FPMODE_ARGS(t_w_));                       \
      exit(1);                                                             \
    }                                                                      \
  } while (0)

/* ---- real arithmetic under the current mode ------------------------------ */

static volatile double v_one = 1.0, v_three = 3.0, v_big = 0x1p100;
static volatile double v_min_normal = 0x1p-1022;
static volatile double v_denormal = 0x1p-1030;

/* 1/3 and -1/3 rounded by the current mode against the values to
 * nearest, which are also the values toward zero: up shows in the first,
 * down in the second */
static int arith_rounding(void) {
  const double nearest = 0x1.5555555555555p-2;
  double q = v_one / v_three, nq = -v_one / v_three;
  return q > nearest ? 1 : nq < -nearest ? -1 : 0;
}

/* Checks that the mode the coroutine (or main) expects steers real
 * arithmetic: rounding, flush-to-zero of a denormal result,
 * denormals-are-zero of a denormal operand.  valgrind computes to nearest
 * and keeps denormals whatever the mode says. */
static void check_arith(fpmode_t want, const char *who) {
  if (on_valgrind()) return;
  T_CHECKF(arith_rounding() == mode_rounding(want),
           "%s: 1/3 rounds %d, want %d", who, arith_rounding(),
           mode_rounding(want));
  double tiny = v_min_normal / 4; /* a denormal result */
  T_CHECKF((tiny == 0) == mode_flushes(want),
           "%s: denormal result %a with flush-to-zero %d", who, tiny,
           mode_flushes(want));
  double d = v_denormal * v_big; /* a denormal operand, a normal result */
  T_CHECKF((d == 0) == mode_denormals_are_zero(want),
           "%s: denormal operand gave %a with denormals-are-zero %d", who, d,
           mode_denormals_are_zero(want));
}

/* ---- control state per coroutine --------------------------------------- */

static aco_t *main_co;
static fpmode_t thread_mode; /* the thread's mode at aco_thread_init */

static void setup(void) {
  if (main_co == NULL) {
    thread_mode = fpmode_get();
    aco_thread_init(NULL);
    main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  }
}

typedef struct {
  int id;
  fpmode_t mode;    /* the mode the coroutine last set */
  fpmode_t initial; /* what it saw when it started */
  int set_every;    /* sets the next mode every set_every rounds (0: once) */
  int rounds;
} fp_arg_t;

static void fp_fn(void) {
  fp_arg_t *a = aco_get_arg();
  char who[48];
  snprintf(who, sizeof(who), "coroutine %d", a->id);
  a->initial = fpmode_get();
  fpmode_set(a->mode);
  for (int r = 1;; r++) {
    aco_yield();
    /* what it set before the yield, whatever ran in between */
    T_FPMODE_EQ(fpmode_get(), a->mode, "%s, round %d, after a resume", who,
                r);
    check_arith(a->mode, who);
    a->rounds = r;
    if (a->set_every && r % a->set_every == 0) {
      /* a late change, kept from now on */
      a->mode = modes[(a->id + r / a->set_every) % NMODES];
      fpmode_set(a->mode);
    }
  }
}

__attribute__((unused)) static void test_control_per_coroutine(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  fp_arg_t a = {.id = 0, .mode = modes[0]}, b = {.id = 1, .mode = modes[1]};
  aco_t *co_a = aco_create(main_co, ss, 0, fp_fn, &a);
  aco_t *co_b = aco_create(main_co, ss, 0, fp_fn, &b);
  for (int r = 0; r < 20; r++) {
    aco_resume(co_a);
    T_FPMODE_EQ(fpmode_get(), thread_mode, "main after resuming A");
    check_arith(thread_mode, "main");
    aco_resume(co_b);
    T_FPMODE_EQ(fpmode_get(), thread_mode, "main after resuming B");
  }
  T_EQ(a.rounds, 19);
  T_EQ(b.rounds, 19);
  T_CHECK(co_a->save_stack.ct_restore > 0); /* they took turns on ss */
  /* each started with the thread's mode, not the other's */
  T_FPMODE_EQ(a.initial, thread_mode, "A at start");
  T_FPMODE_EQ(b.initial, thread_mode, "B at start");

  /* main's own change stays main's; a coroutine created now starts with
   * the mode recorded by aco_thread_init, not main's current one */
  fpmode_set(modes[2]);
  aco_resume(co_a);
  T_FPMODE_EQ(fpmode_get(), modes[2], "main after changing its own mode");
  fp_arg_t c = {.id = 3, .mode = modes[3]};
  aco_t *co_c = aco_create(main_co, ss, 0, fp_fn, &c);
  aco_resume(co_c);
  T_FPMODE_EQ(c.initial, thread_mode, "a coroutine created afterwards");
  T_FPMODE_EQ(fpmode_get(), modes[2], "main after resuming C");
  aco_resume(co_b);
  T_FPMODE_EQ(fpmode_get(), modes[2], "main after resuming B");
  fpmode_set(thread_mode);
  T_EQ(a.rounds, 20);
  T_EQ(b.rounds, 20);

  aco_destroy(co_a);
  aco_destroy(co_b);
  aco_destroy(co_c);
  aco_share_stack_destroy(ss);
}

/* Coroutines change their mode late, every few rounds, each at another
 * time; three share one stack (every resume copies), one has its own.
 * Main changes its own mode too.  Nobody ever sees anybody else's. */
__attribute__((unused)) static void test_control_changed_late(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  aco_share_stack_t *ss2 = aco_share_stack_new(0);
  fp_arg_t args[4];
  aco_t *cos[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (fp_arg_t){.id = i, .mode = modes[i], .set_every = i + 2};
    cos[i] = aco_create(main_co, i == 3 ? ss2 : ss, 0, fp_fn, &args[i]);
  }
  const int rounds = (int)t_scale(300, 10);
  for (int r = 0; r < rounds; r++) {
    /* main's mode: the thread's, or one of the coroutines' now and then
     * (then a switch between equal modes must keep it all the same) */
    fpmode_t mine = r % 7 == 3 ? modes[r % NMODES] : thread_mode;
    fpmode_set(mine);
    /* a varying order, so each coroutine follows each other one */
    for (int k = 0; k < 4; k++) {
      int i = (k * (r % 3 + 1) + r) % 4;
      aco_resume(cos[i]);
      T_FPMODE_EQ(fpmode_get(), mine, "main, round %d, after resuming %d", r,
                  i);
    }
    check_arith(mine, "main");
  }
  for (int i = 0; i < 4; i++) {
    T_EQ(args[i].rounds, rounds - 1);
    T_FPMODE_EQ(args[i].initial, thread_mode, "coroutine %d at start", i);
    aco_destroy(cos[i]);
  }
  fpmode_set(thread_mode);
  aco_share_stack_destroy(ss);
  aco_share_stack_destroy(ss2);
}

/* A coroutine changes its mode and yields; another one on the same share
 * stack (so A is copied out) resumes, changes its own, yields; A comes
 * back with its own, B's never reached main. */
typedef struct {
  fpmode_t set;
  fpmode_t seen[3];
} step_arg_t;

static void step_fn(void) {
  step_arg_t *s = aco_get_arg();
  s->seen[0] = fpmode_get();
  aco_yield();
  fpmode_set(s->set);
  aco_yield();
  s->seen[1] = fpmode_get();
  aco_yield();
  s->seen[2] = fpmode_get();
  aco_exit();
}

__attribute__((unused)) static void
test_control_across_share_stack_handover(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  step_arg_t sa = {.set = modes[1]}, sb = {.set = modes[4]};
  aco_t *a = aco_create(main_co, ss, 0, step_fn, &sa);
  aco_t *b = aco_create(main_co, ss, 0, step_fn, &sb);
  aco_resume(a); /* starts */
  aco_resume(a); /* sets modes[1], yields */
  T_FPMODE_EQ(fpmode_get(), thread_mode, "main after A changed its mode");
  aco_resume(b); /* takes the stack: A copied out; B starts */
  T_FPMODE_EQ(sb.seen[0], thread_mode, "B at start, after A changed");
  aco_resume(b); /* B sets modes[4] */
  T_FPMODE_EQ(fpmode_get(), thread_mode, "main after B changed its mode");
  aco_resume(a); /* A copied back in */
  T_FPMODE_EQ(sa.seen[1], modes[1], "A after B ran on its stack");
  aco_resume(b);
  T_FPMODE_EQ(sb.seen[1], modes[4], "B after A ran on its stack");
  aco_resume(a);
  aco_resume(b);
  T_FPMODE_EQ(sa.seen[2], modes[1], "A at its end");
  T_FPMODE_EQ(sb.seen[2], modes[4], "B at its end");
  T_EQ(a->is_end && b->is_end, 1);
  T_FPMODE_EQ(fpmode_get(), thread_mode, "main at the end");
  T_CHECK(a->save_stack.ct_save >= 2 && b->save_stack.ct_save >= 2);
  aco_destroy(a);
  aco_destroy(b);
  aco_share_stack_destroy(ss);
}

/* ---- sticky status flags: the thread's ------------------------------- */

#define ALL_FLAGS                                                          \
  (FE_DIVBYZERO | FE_INEXACT | FE_INVALID | FE_OVERFLOW | FE_UNDERFLOW)
/* The flags raised here are ones an operation raises alone (overflow and
 * underflow come with inexact on some targets). */

typedef struct {
  fpmode_t mode;
  int raise;    /* flags raised at the next step */
  int seen[4];  /* fetestexcept(ALL_FLAGS) at each step */
  int clear_at; /* the step that clears all flags, -1 none */
} flag_arg_t;

static void flag_fn(void) {
  flag_arg_t *f = aco_get_arg();
  fpmode_set(f->mode);
  for (int step = 0; step < 4; step++) {
    f->seen[step] = fetestexcept(ALL_FLAGS);
    if (step == f->clear_at) feclearexcept(ALL_FLAGS);
    if (f->raise) feraiseexcept(f->raise);
    f->raise = 0;
    aco_yield();
  }
  aco_exit();
}

static int flags_modelled(void) {
  feclearexcept(ALL_FLAGS);
  feraiseexcept(FE_DIVBYZERO);
  int ok = fetestexcept(FE_DIVBYZERO) != 0;
  feclearexcept(ALL_FLAGS);
  return ok;
}

__attribute__((unused)) static void test_sticky_flags_are_the_threads(void) {
  setup();
  if (!flags_modelled()) {
    /* valgrind keeps no status flags: all that can be checked is that
     * switching leaves them clear and the coroutines run */
    T_CHECK(on_valgrind());
    printf("# %s has no status flags: checking only that they stay clear\n",
           t_mode());
  }
  const int want = flags_modelled();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  /* same control state as main (no load at the switch), and another one
   * (the switch loads it and must keep the thread's flags) */
  flag_arg_t same = {.mode = thread_mode, .clear_at = -1};
  flag_arg_t other = {.mode = modes[0], .clear_at = 2};
  aco_t *co_same = aco_create(main_co, ss, 0, flag_fn, &same);
  aco_t *co_other = aco_create(main_co, ss, 0, flag_fn, &other);

  feclearexcept(ALL_FLAGS);
  /* step 0: main raised nothing; same raises divide-by-zero */
  same.raise = FE_DIVBYZERO;
  aco_resume(co_same);
  T_EQ(same.seen[0], 0);
  T_EQ(fetestexcept(ALL_FLAGS), want ? FE_DIVBYZERO : 0); /* seen by main */
  /* other (another control state) sees it too and adds invalid */
  other.raise = FE_INVALID;
  aco_resume(co_other);
  T_EQ(other.seen[0], want ? FE_DIVBYZERO : 0);
  T_FPMODE_EQ(fpmode_get(), thread_mode, "main after other's first run");
  T_EQ(fetestexcept(ALL_FLAGS), want ? (FE_DIVBYZERO | FE_INVALID) : 0);

  /* main clears: cleared for everybody, the switch brings none back
   * (same yielded with divide-by-zero raised) */
  feclearexcept(ALL_FLAGS);
  aco_resume(co_same);
  T_EQ(same.seen[1], 0);
  aco_resume(co_other);
  T_EQ(other.seen[1], 0);

  /* main raises inexact: seen in both, across the loads of other's mode */
  feraiseexcept(FE_INEXACT);
  other.raise = FE_DIVBYZERO;
  aco_resume(co_other); /* step 2: sees inexact, clears all, raises one */
  T_EQ(other.seen[2], want ? FE_INEXACT : 0);
  T_EQ(fetestexcept(ALL_FLAGS), want ? FE_DIVBYZERO : 0);
  aco_resume(co_same);
  T_EQ(same.seen[2], want ? FE_DIVBYZERO : 0);
  T_FPMODE_EQ(fpmode_get(), thread_mode, "main after the flags moved");

  aco_resume(co_same);
  aco_resume(co_other);
  aco_resume(co_same);
  aco_resume(co_other);
  T_EQ(co_same->is_end && co_other->is_end, 1);
  feclearexcept(ALL_FLAGS);
  aco_destroy(co_same);
  aco_destroy(co_other);
  aco_share_stack_destroy(ss);
}

/* aco_save_fpucw_mxcsr stores the control state where libaco does */
static void test_save_fpucw_mxcsr(void) {
  setup();
  fpmode_set(modes[1]);
  unsigned char buf[16];
  memset(buf, 0xa5, sizeof(buf));
  aco_save_fpucw_mxcsr(buf);
#if defined(__x86_64__)
  uint16_t cw;
  uint32_t mx;
  memcpy(&cw, buf, 2);
  memcpy(&mx, buf + 4, 4);
  T_FPMODE_EQ(((fpmode_t){mx & mxcsr_bits(), (uint16_t)(cw & x87_bits())}),
              modes[1], "aco_save_fpucw_mxcsr");
  T_EQ(buf[8], 0xa5); /* nothing beyond the 8 bytes */
#else
  uint64_t fpcr;
  memcpy(&fpcr, buf, 8);
  T_FPMODE_EQ(((fpmode_t){fpcr & FPCR_BITS}), modes[1],
              "aco_save_fpucw_mxcsr");
  T_EQ(buf[8], 0xa5);
#endif
  fpmode_set(thread_mode);
}

/* Built with ACO_CONFIG_SHARE_FPU_MXCSR_ENV (make
 * EXTRA_CFLAGS=-DACO_CONFIG_SHARE_FPU_MXCSR_ENV) the control state is the
 * thread's, as libaco documents for that macro: what a coroutine sets,
 * main and the other coroutines see.  Each build runs the cases that
 * hold for it (the others are marked unused). */
static void set_and_yield_fn(void) {
  step_arg_t *s = aco_get_arg();
  s->seen[0] = fpmode_get();
  fpmode_set(s->set);
  aco_yield();
  s->seen[1] = fpmode_get();
  aco_exit();
}

__attribute__((unused)) static void test_control_shared(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  step_arg_t sa = {.set = modes[1]}, sb = {.set = modes[4]};
  aco_t *a = aco_create(main_co, ss, 0, set_and_yield_fn, &sa);
  aco_t *b = aco_create(main_co, ss, 0, set_and_yield_fn, &sb);
  fpmode_set(modes[2]);
  aco_resume(a);
  T_FPMODE_EQ(sa.seen[0], modes[2], "A sees main's mode");
  T_FPMODE_EQ(fpmode_get(), modes[1], "main sees A's mode");
  aco_resume(b);
  T_FPMODE_EQ(sb.seen[0], modes[1], "B sees A's mode");
  aco_resume(a);
  T_FPMODE_EQ(sa.seen[1], modes[4], "A sees B's mode");
  aco_resume(b);
  fpmode_set(thread_mode);
  aco_destroy(a);
  aco_destroy(b);
  aco_share_stack_destroy(ss);
}

#ifdef ACO_CONFIG_SHARE_FPU_MXCSR_ENV
T_MAIN({"control_shared", test_control_shared},
       {"save_fpucw_mxcsr", test_save_fpucw_mxcsr})
#else
T_MAIN({"control_per_coroutine", test_control_per_coroutine},
       {"control_changed_late", test_control_changed_late},
       {"control_across_share_stack_handover",
        test_control_across_share_stack_handover},
       {"sticky_flags_are_the_threads", test_sticky_flags_are_the_threads},
       {"save_fpucw_mxcsr", test_save_fpucw_mxcsr})
#endif
