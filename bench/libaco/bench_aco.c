/*
 * bench_aco.c - switch, create and memory costs of a libaco-API library.
 *
 * One source, built twice by bench/libaco/run.sh: against our aco.h and
 * library, and (when LIBACO_DIR is given) against a libaco 1.2.4 source
 * checkout.  It uses only the API the two share.
 *
 *   bench_aco switch [runs [size]]  ns per resume+yield pair for each copy
 *                                   size (or only the given one)
 *   bench_aco create [runs]         ns per aco_create / aco_destroy
 *   bench_aco mem [count]           resident bytes per idle coroutine
 *                                   holding 120 B, sized save stacks
 *   bench_aco mem-default [count]   the same, save_stack_sz 0
 *   bench_aco all                   switch and create (memory figures need
 *                                   a fresh process each)
 *
 * Output: one "name value" line per figure (run.sh pairs them up), then
 * "#" comment lines.  Each figure is the median of several runs on one
 * pinned CPU after a warm-up.
 *
 * Copy sizes.  Two coroutines alternate on one share stack, so every
 * resume copies the other one's live bytes out and its own back in.  The
 * live bytes at the yield are the coroutine function's own frame: a
 * function with nothing on its stack (the minimal 8 bytes that keep the
 * call aligned) or one that alloca()s a pad and fills it.  The pad is
 * calibrated against the library under test (frame sizes differ with
 * each header's aco_yield), and the size actually copied is read back from
 * save_stack.max_cpsz / valid_sz and printed; the figure is only reported
 * for the size it was really measured at.
 */
#define _GNU_SOURCE
#include "aco.h"

#define BENCH_NAME "bench_aco"
#include "../bench_util.h"

#include <alloca.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 31

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the coroutine functions ------------------------------------------ */

typedef struct {
  size_t pad;          /* bytes alloca()'d below the function's frame */
  unsigned char seed;  /* fill pattern, distinct per coroutine */
  volatile int check;  /* set by main: verify the pad after the next yield */
  volatile int ok;     /* 1 after a successful check, -1 on a mismatch */
  const volatile unsigned char *buf; /* the coroutine's bytes, for the check */
} co_arg_t;

/* Checks that b[0..n) still holds the pattern of the running coroutine
 * (out of line, so it keeps nothing alive in the caller's frame). */
__attribute__((noinline)) static void check_bytes(
    const volatile unsigned char *b, size_t n) {
  co_arg_t *a = aco_get_arg();
  int ok = 1;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (unsigned char)(a->seed + i * 7)) ok = -1;
  a->ok = ok;
  a->check = 0;
}

/* Nothing on its stack but the alignment the call to aco_yield needs. */
static void co_min(void) {
  for (;;) aco_yield();
}

/* alloca(pad), filled with a pattern that is checked on request: the bytes
 * are really on the stack at every yield and must come back intact. */
static void co_pad(void) {
  co_arg_t *a = aco_get_arg();
  size_t pad = a->pad;
  unsigned char *p = alloca(pad);
  for (size_t i = 0; i < pad; i++) p[i] = (unsigned char)(a->seed + i * 7);
  /* p escapes to the asm, so neither the alloca nor the stores go away */
  __asm__ volatile("" : : "r"(p) : "memory");
  for (;;) {
    aco_yield();
    if (a->check) check_bytes(p, pad);
  }
}

/* A fixed array and nothing else live across the yield: small frames
 * (the alloca coroutine above keeps more registers alive). */
#define CO_ARR(K)                                                        \
  static void co_arr##K(void) {                                          \
    volatile unsigned char b[K];                                         \
    co_arg_t *a0 = aco_get_arg();                                        \
    for (size_t i = 0; i < K; i++) b[i] = (unsigned char)(a0->seed + i * 7); \
    a0->buf = b; /* so nothing but b itself stays live in this frame */  \
    for (;;) {                                                           \
      aco_yield();                                                       \
      co_arg_t *a = aco_get_arg();                                       \
      if (a->check) check_bytes(a->buf, K);                              \
    }                                                                    \
  }
CO_ARR(16)
CO_ARR(32)
CO_ARR(48)
CO_ARR(64)

/* ---- copy-size calibration -------------------------------------------- */

static aco_t *main_co;

/* Bytes copied for a coroutine running fp with a (resume a, b, a). */
static size_t measure_copy(aco_cofuncp_t fp, size_t pad) {
  aco_share_stack_t *ss = aco_share_stack_new(0);
  co_arg_t aa = {.pad = pad, .seed = 1}, ba = {.pad = pad, .seed = 2};
  aco_t *a = aco_create(main_co, ss, 0, fp, &aa);
  aco_t *b = aco_create(main_co, ss, 0, fp, &ba);
  aco_resume(a);
  aco_resume(b);
  aco_resume(a);
  size_t n = a->save_stack.max_cpsz;
  if (b->save_stack.max_cpsz != n || a->save_stack.valid_sz != n)
    fail("calibration: the two coroutines copied different sizes");
  aco_destroy(a);
  aco_destroy(b);
  aco_share_stack_destroy(ss);
  return n;
}

typedef struct {
  aco_cofuncp_t fp;
  size_t pad;
  size_t copied; /* measured; 0 when the target cannot be reached */
} plan_t;

static size_t min_frame, pad_frame;

static void calibrate(void) {
  min_frame = measure_copy(co_min, 0);
  pad_frame = measure_copy(co_pad, 0);
  printf("# frames: minimal coroutine %zu B, alloca coroutine %zu B + pad\n",
         min_frame, pad_frame);
}

static plan_t plan_for(size_t target) {
  plan_t p = {co_min, 0, 0};
  if (target == min_frame) {
    p.copied = min_frame;
    return p;
  }
  static const aco_cofuncp_t fixed[] = {co_arr16, co_arr32, co_arr48,
                                        co_arr64};
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
    size_t n = measure_copy(fixed[i], 0);
    if (n == target) {
      p.fp = fixed[i];
      p.copied = n;
      return p;
    }
  }
  if (target < pad_frame) return p;
  p.fp = co_pad;
  p.pad = target - pad_frame;
  p.copied = measure_copy(co_pad, p.pad);
  return p;
}

/* ---- switch benchmark -------------------------------------------------- */

static const size_t copy_sizes[] = {8, 24, 40, 56, 120, 136, 488, 1000, 7992};
#define NSIZES (sizeof(copy_sizes) / sizeof(copy_sizes[0]))

/* Where the main stack, the heap blocks and the share stack fall relative
 * to each other (4 KiB aliasing between the copies' loads and earlier
 * stores, cache-line splits) moves a figure by 10-30% from one process to
 * the next.  So each timed run uses fresh coroutines behind a different
 * heap offset, timed from a different main-stack depth, and the median
 * is over those layouts rather than one lucky or unlucky one. */
static size_t layout_shift(int r) { return (size_t)(r * 208) % 4096 + 16; }

/* ns per resume+yield pair over iters rounds of a and b (b may be a);
 * timed_at_depth runs it `depth` bytes deeper on the main stack */
__attribute__((noinline)) static double timed_pairs(aco_t *a, aco_t *b,
                                                    long iters) {
  double t0 = now_ns();
  if (a == b) {
    for (long i = 0; i < iters; i++) aco_resume(a);
    return (now_ns() - t0) / (double)iters;
  }
  for (long i = 0; i < iters; i++) {
    aco_resume(a);
    aco_resume(b);
  }
  return (now_ns() - t0) / (double)(2 * iters);
}
__attribute__((noinline)) static double timed_at_depth(size_t depth,
                                                       aco_t *a, aco_t *b,
                                                       long iters) {
  volatile char *d = alloca(depth);
  d[0] = 0;
  return timed_pairs(a, b, iters);
}

/* ns per resume+yield pair: one coroutine alone on its share stack */
static double switch_alone(long iters, int runs) {
  aco_share_stack_t *ss = aco_share_stack_new(0);
  co_arg_t arg = {.pad = 0, .seed = 3};
  double v[MAX_RUNS];
  for (int r = 0; r < runs; r++) {
    void *shift = malloc(layout_shift(r));
    aco_t *co = aco_create(main_co, ss, 0, co_min, &arg);
    timed_pairs(co, co, iters / 4 + 1); /* warm-up */
    v[r] = timed_at_depth(layout_shift(runs - r), co, co, iters);
    if (co->save_stack.ct_save != 0 || co->save_stack.ct_restore != 0)
      fail("alone: a coroutine alone on its stack was copied");
    aco_destroy(co);
    free(shift);
  }
  aco_share_stack_destroy(ss);
  return median(v, runs);
}

/* ns per resume+yield pair: two coroutines alternating on one share stack,
 * each resume copying `copied` bytes out and the same back in */
static double switch_pair(const plan_t *p, long iters, int runs) {
  aco_share_stack_t *ss = aco_share_stack_new(0);
  double v[MAX_RUNS];
  for (int r = 0; r < runs; r++) {
    void *shift = malloc(layout_shift(r));
    co_arg_t aa = {.pad = p->pad, .seed = 11},
             ba = {.pad = p->pad, .seed = 97};
    aco_t *a = aco_create(main_co, ss, 0, p->fp, &aa);
    aco_t *b = aco_create(main_co, ss, 0, p->fp, &ba);
    timed_pairs(a, b, iters / 4 + 1); /* warm-up (save stacks grow) */
    v[r] = timed_at_depth(layout_shift(runs - r), a, b, iters);
    if (a->save_stack.max_cpsz != p->copied ||
        a->save_stack.valid_sz != p->copied ||
        b->save_stack.max_cpsz != p->copied)
      fail("pair: copy size changed during the run");
    if (p->fp != co_min) { /* the stack bytes survived all those copies */
      aa.check = ba.check = 1;
      aco_resume(a);
      aco_resume(b);
      if (aa.ok != 1 || ba.ok != 1) fail("pair: stack bytes corrupted");
    }
    aco_destroy(a);
    aco_destroy(b);
    free(shift);
  }
  aco_share_stack_destroy(ss);
  return median(v, runs);
}

/* MXCSR at aco_thread_init (every coroutine starts with it) */
static unsigned mxcsr_at_init;
static unsigned mxcsr_now(void) {
  unsigned m = 0;
#if defined(__x86_64__)
  __asm__ volatile("stmxcsr %0" : "=m"(m));
#endif
  return m;
}

/* only: one copy size (0: alone), or all of them when (size_t)-1 */
static void bench_switch(int runs, size_t only) {
  calibrate();
  if (only == 0 || only == (size_t)-1) {
    printf("switch_0 %.2f\n", switch_alone(600000, runs));
    printf("# switch_0: copied 0 B (alone on its share stack)\n");
  }
  for (size_t i = 0; i < NSIZES; i++) {
    size_t target = copy_sizes[i];
    if (only != (size_t)-1 && only != target) continue;
    plan_t p = plan_for(target);
    if (p.copied != target) {
      printf("# switch_%zu: not reachable with this library (measured %zu B)\n",
             target, p.copied);
      continue;
    }
    long iters = target > 2000 ? 40000 : 300000;
    printf("switch_%zu %.2f\n", target, switch_pair(&p, iters, runs));
    printf("# switch_%zu: copied %zu B each way per resume (max_cpsz)\n",
           target, p.copied);
  }
  /* main's timing arithmetic has raised status flags (inexact) by now, so
   * its MXCSR differs from the coroutines' after the first timed run: the
   * usual case for any program that does floating-point work */
  printf("# fp: MXCSR %#x in main after the timed runs, %#x in the "
         "coroutines (from aco_thread_init)\n", mxcsr_now(), mxcsr_at_init);
}

/* ---- create / destroy -------------------------------------------------- */

/* Batches of n creates, then n destroys.  First one batch of each kind on
 * fresh heap pages (create_cold_*: they pay the page faults; all three are
 * alive together so none reuses another's memory), then, per kind, batches
 * that reuse the memory the previous batch freed (create_*, destroy_*).
 * glibc would give most of that memory back to the kernel after each
 * batch (its trim threshold is 128 KiB) and fault it in again in the next
 * one, so the figure would depend on how the library's blocks happen to
 * pack; the benchmark turns trimming off to measure aco_create and malloc,
 * not the kernel. */
static void bench_create(int runs) {
  static const struct {
    size_t sz;
    const char *name;
    long n;
  } kinds[] = {{0, "default", 100000}, {120, "120", 100000},
               {8192, "8k", 10000}};
  enum { NKINDS = sizeof(kinds) / sizeof(kinds[0]) };
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  aco_share_stack_t *ss = aco_share_stack_new(0);
  co_arg_t arg = {0};
  aco_t **cos[NKINDS];
  double cold[NKINDS];
  for (int k = 0; k < NKINDS; k++) {
    cos[k] = calloc((size_t)kinds[k].n, sizeof(aco_t *));
    if (!cos[k]) die("out of memory");
  }
  for (int k = 0; k < NKINDS; k++) {
    double t0 = now_ns();
    for (long i = 0; i < kinds[k].n; i++)
      cos[k][i] = aco_create(main_co, ss, kinds[k].sz, co_min, &arg);
    cold[k] = (now_ns() - t0) / (double)kinds[k].n;
  }
  for (int k = 0; k < NKINDS; k++)
    for (long i = 0; i < kinds[k].n; i++) aco_destroy(cos[k][i]);
  for (int k = 0; k < NKINDS; k++) {
    long n = kinds[k].n;
    double vc[MAX_RUNS], vd[MAX_RUNS];
    for (int r = -1; r < runs; r++) { /* r == -1: warm-up */
      double t0 = now_ns();
      for (long i = 0; i < n; i++)
        cos[k][i] = aco_create(main_co, ss, kinds[k].sz, co_min, &arg);
      double t1 = now_ns();
      for (long i = 0; i < n; i++) aco_destroy(cos[k][i]);
      double t2 = now_ns();
      if (r >= 0) {
        vc[r] = (t1 - t0) / (double)n;
        vd[r] = (t2 - t1) / (double)n;
      }
    }
    printf("create_%s %.2f\n", kinds[k].name, median(vc, runs));
    printf("destroy_%s %.2f\n", kinds[k].name, median(vd, runs));
    printf("# create_%s: save_stack_sz %zu, batches of %ld\n", kinds[k].name,
           kinds[k].sz, n);
  }
  for (int k = 0; k < NKINDS; k++) {
    printf("create_cold_%s %.2f\n", kinds[k].name, cold[k]);
    free(cos[k]);
  }
  aco_share_stack_destroy(ss);
}

/* ---- memory ------------------------------------------------------------ */

/* count coroutines, each suspended holding `hold` bytes in its save stack,
 * created with save_stack_sz `ssz` (0: the library's default) */
static double mem_per_co(long count, size_t hold, size_t ssz) {
  plan_t p = plan_for(hold);
  if (p.copied != hold) fail("mem: cannot make a coroutine hold that size");
  aco_share_stack_t *ss = aco_share_stack_new(0);
  co_arg_t arg = {.pad = p.pad, .seed = 5};
  aco_t **cos = malloc((size_t)count * sizeof(*cos));
  if (!cos) die("out of memory");
  /* resident before (not 0: gcc would make malloc+memset a calloc) */
  memset(cos, 0xff, (size_t)count * sizeof(*cos));
  aco_t *flush = aco_create(main_co, ss, 0, co_min, &arg);
  aco_resume(flush);
  size_t before = rss_bytes();
  for (long i = 0; i < count; i++) {
    cos[i] = aco_create(main_co, ss, ssz, p.fp, &arg);
    aco_resume(cos[i]); /* runs to its yield; the next resume saves it */
  }
  aco_resume(flush); /* the last one is saved too */
  size_t after = rss_bytes();
  for (long i = 0; i < count; i++)
    if (cos[i]->save_stack.valid_sz != hold) fail("mem: wrong saved size");
  for (long i = 0; i < count; i++) aco_destroy(cos[i]);
  aco_destroy(flush);
  free(cos);
  aco_share_stack_destroy(ss);
  return (double)(after - before) / (double)count;
}

static void bench_mem(long count) {
  calibrate();
  const size_t hold = 120;
  double sized = mem_per_co(count, hold, hold);
  printf("mem_sized_per_co %.1f\n", sized);
  printf("mem_sized_beyond %.1f\n", sized - (double)hold);
  printf("# mem_sized: %ld coroutines, save_stack_sz %zu, each holding %zu B"
         " saved\n", count, hold, hold);
}

static void bench_mem_default(long count) {
  calibrate();
  const size_t hold = 120;
  double dflt = mem_per_co(count, hold, 0);
  printf("mem_default_per_co %.1f\n", dflt);
  printf("mem_default_10m_gib %.3f\n", dflt * 1e7 / (double)(1u << 30));
  printf("# mem_default: %ld coroutines, save_stack_sz 0 (grown on demand),"
         " each holding %zu B saved\n", count, hold);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "all";
  long n = argc > 2 ? atol(argv[2]) : 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  mxcsr_at_init = mxcsr_now();
  aco_thread_init(NULL);
  main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  pin_cpu();
  int runs = n > 0 ? (int)n : 15;
  if (runs > MAX_RUNS) runs = MAX_RUNS;
  if (strcmp(mode, "mem") == 0) {
    bench_mem(n > 0 ? n : 1000000);
  } else if (strcmp(mode, "mem-default") == 0) {
    bench_mem_default(n > 0 ? n : 1000000);
  } else {
    if (strcmp(mode, "switch") != 0)
      printf("sizeof_aco_t %zu\n", sizeof(aco_t));
    if (strcmp(mode, "switch") == 0 || strcmp(mode, "all") == 0)
      bench_switch(runs, argc > 3 ? (size_t)atol(argv[3]) : (size_t)-1);
    if (strcmp(mode, "create") == 0 || strcmp(mode, "all") == 0)
      bench_create(runs);
  }
  aco_destroy(main_co);
  return 0;
}
