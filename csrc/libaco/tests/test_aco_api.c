/*
 * test_aco_api.c - every libaco API function and the semantics that define
 * it: resume/yield/exit, copy-on-owner-change with exact byte counts,
 * save-stack growth, many coroutines and several share stacks, destroy of
 * suspended coroutines, floating point across switches, coroutine-local
 * storage, names.
 */
#include <math.h>
#include <stdlib.h>

#include "aco.h"
#include "acotest.h"

static aco_t *main_co;

static void setup(void) {
  if (main_co == NULL) {
    aco_thread_init(NULL);
    main_co = aco_create(NULL, NULL, 0, NULL, NULL);
  }
}

/* Bytes a suspended coroutine has live on its share stack. */
static size_t live_bytes(const aco_t *co) {
  return (size_t)((char *)co->share_stack->align_retptr -
                  (char *)co->reg[ACO_REG_IDX_SP]);
}

/* ---- resume / yield / exit ------------------------------------------------ */

typedef struct {
  int steps;
  void *seen_arg;
  aco_t *seen_co;
  aco_t *seen_current;
} counter_t;

static void count_fn(void) {
  counter_t *c = aco_get_arg();
  c->seen_arg = aco_get_arg();
  c->seen_co = aco_get_co();
  c->seen_current = aco_current();
  for (;;) {
    c->steps++;
    aco_yield();
  }
}

static void test_resume_yield_exit(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  T_EQ(ss->sz, 2u << 20);
  T_EQ(ss->guard_page_enabled, 1);
  T_PTR_EQ(ss->owner, NULL);
  counter_t c = {0};
  aco_t *co = aco_create(main_co, ss, 0, count_fn, &c);
  T_PTR_EQ(co->main_co, main_co);
  T_PTR_EQ(co->arg, &c);
  T_PTR_EQ((void *)co->fp, (void *)count_fn);
  T_PTR_EQ(co->share_stack, ss);
  T_EQ(co->is_end, 0);
  T_CHECK(!aco_is_main_co(co));
  T_CHECK(aco_is_main_co(main_co));
  T_EQ(c.steps, 0); /* creating does not run it */
  for (int i = 1; i <= 5; i++) {
    aco_resume(co);
    T_EQ(c.steps, i);
    T_PTR_EQ(aco_get_co(), main_co); /* back on main after resume */
    T_PTR_EQ(aco_current(), NULL);
  }
  T_PTR_EQ(c.seen_arg, &c);
  T_PTR_EQ(c.seen_co, co);
  T_PTR_EQ(c.seen_current, co);
  T_PTR_EQ(ss->owner, co);
  /* a coroutine alone on its stack never copies */
  T_EQ(co->save_stack.ct_save, 0);
  T_EQ(co->save_stack.ct_restore, 0);
  aco_destroy(co);
  T_PTR_EQ(ss->owner, NULL); /* destroy gives the stack up */
  aco_share_stack_destroy(ss);
}

static int exit_ran;
static void exit_fn(void) {
  exit_ran = 1;
  aco_yield();
  exit_ran = 2;
  aco_exit();
}

static void test_exit_gives_up_stack(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  aco_t *co = aco_create(main_co, ss, 0, exit_fn, NULL);
  aco_resume(co);
  T_EQ(exit_ran, 1);
  T_EQ(co->is_end, 0);
  aco_resume(co);
  T_EQ(exit_ran, 2);
  T_EQ(co->is_end, 1);
  /* exit drops ownership without saving anything */
  T_PTR_EQ(ss->owner, NULL);
  T_EQ(co->save_stack.ct_save, 0);
  T_EQ(co->save_stack.valid_sz, 0);
  aco_destroy(co);
  aco_share_stack_destroy(ss);
}

/* ---- copy on owner change, exact bytes ------------------------------------ */

typedef struct {
  unsigned char pattern;
  int rounds;
  int ok;
  size_t depth; /* bytes of array to keep live on the stack */
} filler_t;

/* Keeps `depth` bytes of a recognisable pattern on the stack across
 * yields and checks it is intact after every resume. */
__attribute__((noinline)) static void fill_and_yield(filler_t *f) {
  volatile unsigned char buf[f->depth ? f->depth : 1];
  for (size_t i = 0; i < f->depth; i++) buf[i] = (unsigned char)(f->pattern + i);
  for (;;) {
    aco_yield();
    for (size_t i = 0; i < f->depth; i++)
      if (buf[i] != (unsigned char)(f->pattern + i)) f->ok = 0;
    f->rounds++;
  }
}

static void filler_fn(void) {
  filler_t *f = aco_get_arg();
  fill_and_yield(f);
}

static void test_copy_on_owner_change(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  filler_t fa = {.pattern = 0x11, .ok = 1, .depth = 200};
  filler_t fb = {.pattern = 0x77, .ok = 1, .depth = 300};
  aco_t *a = aco_create(main_co, ss, 0, filler_fn, &fa);
  aco_t *b = aco_create(main_co, ss, 0, filler_fn, &fb);

  aco_resume(a);
  size_t a_live = live_bytes(a);
  T_GE(a_live, 200);
  T_LE(a_live, 200 + (t_sanitized() ? 1024 : 256)); /* ASan adds redzones */
  /* yielding and resuming the same coroutine copies nothing */
  aco_resume(a);
  T_EQ(a->save_stack.ct_save, 0);
  T_EQ(a->save_stack.ct_restore, 0);
  T_EQ(live_bytes(a), a_live);

  /* b takes the stack: exactly a's live bytes are copied out */
  aco_resume(b);
  T_EQ(a->save_stack.ct_save, 1);
  T_EQ(a->save_stack.valid_sz, a_live);
  T_EQ(a->save_stack.max_cpsz, a_live);
  T_GE(a->save_stack.sz, a_live); /* grew from 64 on demand */
  T_EQ(b->save_stack.ct_restore, 0); /* b was fresh: nothing to restore */
  size_t b_live = live_bytes(b);
  T_GE(b_live, 300);

  size_t out = 0;
  T_EQ(aco_resume_copy_cost(a, &out), a_live);
  T_EQ(out, b_live);
  T_EQ(aco_resume_copy_cost(b, &out), 0); /* b owns the stack */

  /* a back: b's bytes out, a's bytes back in, to the same addresses */
  aco_resume(a);
  T_EQ(b->save_stack.ct_save, 1);
  T_EQ(b->save_stack.valid_sz, b_live);
  T_EQ(a->save_stack.ct_restore, 1);
  /* libaco's meaning: a's bytes and the return slot above them */
  T_EQ(ss->align_validsz,
       a_live + (size_t)((char *)ss->align_highptr - (char *)ss->align_retptr));
  for (int i = 0; i < 50; i++) {
    aco_resume(b);
    aco_resume(a);
  }
  T_EQ(a->save_stack.ct_save, 51);
  T_EQ(a->save_stack.ct_restore, 51);
  T_EQ(b->save_stack.ct_restore, 50); /* its first resume had nothing to restore */
  T_CHECK(fa.ok && fb.ok);
  T_EQ(fa.rounds, 52);
  T_EQ(fb.rounds, 50);
  aco_destroy(a);
  aco_destroy(b);
  aco_share_stack_destroy(ss);
}

/* ---- save stack growth ----------------------------------------------------- */

static void test_save_stack_growth(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  filler_t fbig = {.pattern = 0x21, .ok = 1, .depth = 5000};
  filler_t fsmall = {.pattern = 0x42, .ok = 1, .depth = 8};
  aco_t *big = aco_create(main_co, ss, 64, filler_fn, &fbig);
  aco_t *small = aco_create(main_co, ss, 64, filler_fn, &fsmall);
  size_t sz0 = big->save_stack.sz;
  T_GE(sz0, 64);
  T_LE(sz0, 256);
  aco_resume(big);
  size_t need = live_bytes(big);
  aco_resume(small);
  T_GE(big->save_stack.sz, need);
  T_EQ(big->save_stack.max_cpsz, need);
  T_EQ(big->save_stack.valid_sz, need);
  aco_resume(big);
  T_CHECK(fbig.ok);
  /* each save stack is sized by its own coroutine's need */
  T_GE(small->save_stack.sz, small->save_stack.max_cpsz);
  T_LE(small->save_stack.sz, 2 * sz0 + (t_sanitized() ? 1024 : 256));
  T_LE(small->save_stack.sz, big->save_stack.sz / 4);
  /* a requested size is honoured (rounded up) */
  aco_t *sized = aco_create(main_co, ss, 1000, filler_fn, &fsmall);
  T_GE(sized->save_stack.sz, 1000);
  aco_destroy(sized);
  aco_destroy(big);
  aco_destroy(small);
  aco_share_stack_destroy(ss);
}

/* ---- many coroutines, several stacks ------------------------------------ */

typedef struct {
  int id;
  long sum;
  int rounds;
} many_t;

static void many_fn(void) {
  many_t *m = aco_get_arg();
  /* state held in locals on the (shared) stack across yields */
  long local_sum = 0;
  volatile int mark[8];
  for (int i = 0; i < 8; i++) mark[i] = m->id * 8 + i;
  for (;;) {
    for (int i = 0; i < 8; i++) aco_assert(mark[i] == m->id * 8 + i);
    local_sum += m->id;
    m->sum = local_sum;
    m->rounds++;
    aco_yield();
  }
}

static void run_many(int nstacks, int per_stack, int rounds) {
  int n = nstacks * per_stack;
  aco_share_stack_t **ss = calloc((size_t)nstacks, sizeof(*ss));
  aco_t **cos = calloc((size_t)n, sizeof(*cos));
  many_t *ms = calloc((size_t)n, sizeof(*ms));
  for (int s = 0; s < nstacks; s++) ss[s] = aco_share_stack_new(64 * 1024);
  for (int i = 0; i < n; i++) {
    ms[i].id = i + 1;
    /* interleave stacks: i % nstacks */
    cos[i] = aco_create(main_co, ss[i % nstacks], 0, many_fn, &ms[i]);
  }
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < n; i++) aco_resume(cos[i]);
  for (int i = 0; i < n; i++) {
    T_EQ(ms[i].rounds, rounds);
    T_EQ(ms[i].sum, (long)(i + 1) * rounds);
    if (per_stack > 1) {
      T_EQ(cos[i]->save_stack.ct_restore, rounds - 1);
    } else {
      T_EQ(cos[i]->save_stack.ct_save, 0); /* alone on its stack */
    }
  }
  for (int i = 0; i < n; i++) aco_destroy(cos[i]);
  for (int s = 0; s < nstacks; s++) aco_share_stack_destroy(ss[s]);
  free(ss);
  free(cos);
  free(ms);
}

static void test_many_on_one_stack(void) {
  setup();
  run_many(1, 2, 20);
  run_many(1, (int)t_scale(1000, 10), 10);
}

static void test_several_stacks(void) {
  setup();
  run_many(4, (int)t_scale(50, 5), 10);
  run_many(3, 1, 5);
}

/* ---- destroy suspended ------------------------------------------------------- */

static void test_destroy_suspended(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  filler_t f1 = {.pattern = 1, .ok = 1, .depth = 100};
  filler_t f2 = {.pattern = 2, .ok = 1, .depth = 100};
  filler_t f3 = {.pattern = 3, .ok = 1, .depth = 100};
  aco_t *c1 = aco_create(main_co, ss, 0, filler_fn, &f1);
  aco_t *c2 = aco_create(main_co, ss, 0, filler_fn, &f2);
  aco_t *c3 = aco_create(main_co, ss, 0, filler_fn, &f3);
  aco_resume(c1);
  aco_resume(c2); /* c1 saved */
  aco_destroy(c1); /* suspended and saved: freed, never resumed */
  /* destroy the owner: the stack is given up without saving */
  T_PTR_EQ(ss->owner, c2);
  aco_destroy(c2);
  T_PTR_EQ(ss->owner, NULL);
  aco_resume(c3); /* nothing to save */
  aco_resume(c3);
  T_EQ(c3->save_stack.ct_restore, 0);
  T_CHECK(f3.ok);
  T_EQ(f3.rounds, 1);
  /* a never-resumed coroutine can be destroyed too */
  aco_t *c4 = aco_create(main_co, ss, 0, filler_fn, &f1);
  aco_destroy(c4);
  aco_destroy(c3);
  aco_share_stack_destroy(ss);
}

/* ---- floating point across switches ------------------------------------- */

typedef struct {
  double seed;
  double result;
} fp_t;

static void fp_fn(void) {
  fp_t *f = aco_get_arg();
  double acc = f->seed, x = f->seed / 7.0;
  for (int i = 0; i < 100; i++) {
    acc = acc * 1.0000001 + sqrt(x + i);
    aco_yield();
    x = x * 0.999 + acc * 1e-9;
  }
  f->result = acc + x;
  aco_exit();
}

static double fp_reference(double seed) {
  double acc = seed, x = seed / 7.0;
  for (int i = 0; i < 100; i++) {
    acc = acc * 1.0000001 + sqrt(x + i);
    x = x * 0.999 + acc * 1e-9;
  }
  return acc + x;
}

static void test_float_across_switches(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  fp_t f[3] = {{1.5, 0}, {300.25, 0}, {1e6, 0}};
  aco_t *cos[3];
  for (int i = 0; i < 3; i++)
    cos[i] = aco_create(main_co, ss, 0, fp_fn, &f[i]);
  double mine = 3.0;
  while (!cos[0]->is_end || !cos[1]->is_end || !cos[2]->is_end) {
    for (int i = 0; i < 3; i++)
      if (!cos[i]->is_end) aco_resume(cos[i]);
    mine = mine * 1.5 - 1.0;
  }
  for (int i = 0; i < 3; i++) {
    T_CHECKF(f[i].result == fp_reference(f[i].seed), "co %d: %.17g != %.17g",
             i, f[i].result, fp_reference(f[i].seed));
    aco_destroy(cos[i]);
  }
  T_CHECK(mine > 3.0);
  aco_share_stack_destroy(ss);
}

/* ---- share stacks ------------------------------------------------------------ */

static void test_share_stack_new2(void) {
  setup();
  long pg = sysconf(_SC_PAGESIZE);
  aco_share_stack_t *g = aco_share_stack_new2(10000, 1);
  T_EQ(g->sz % (size_t)pg, 0);
  T_GE(g->sz, 10000);
  T_EQ(g->real_sz, g->sz + (size_t)pg);
  T_PTR_EQ((char *)g->real_ptr + pg, g->ptr);
  T_EQ((uintptr_t)g->align_highptr % 16, 0);
  T_LE((uintptr_t)g->align_highptr, (uintptr_t)g->ptr + g->sz);
  aco_share_stack_t *n = aco_share_stack_new2(1, 0);
  T_EQ(n->guard_page_enabled, 0);
  T_GE(n->sz, 4096);
  T_PTR_EQ(n->real_ptr, n->ptr);
  /* a coroutine runs on a small unguarded stack too */
  counter_t c = {0};
  aco_t *co = aco_create(main_co, n, 0, count_fn, &c);
  aco_resume(co);
  T_EQ(c.steps, 1);
  aco_destroy(co);
  aco_share_stack_destroy(n);
  aco_share_stack_destroy(g);
}

/* ---- coroutine-local storage, names ------------------------------------- */

static int cls_key = -1;
static void cls_fn(void) {
  long *out = aco_get_arg();
  aco_cls_set(aco_current(), cls_key, out);
  aco_yield();
  /* still ours after another coroutine set its own */
  long *mine = aco_cls_get(aco_current(), cls_key);
  *mine += 1;
  aco_exit();
}

static void test_cls_and_names(void) {
  setup();
  if (cls_key < 0) cls_key = aco_cls_key_create();
  T_GE(cls_key, 0);
  T_LE(cls_key, ACO_CLS_SLOTS - 1);
  aco_share_stack_t *ss = aco_share_stack_new(0);
  long va = 10, vb = 20;
  aco_t *a = aco_create(main_co, ss, 0, cls_fn, &va);
  aco_t *b = aco_create(main_co, ss, 0, cls_fn, &vb);
  T_PTR_EQ(aco_cls_get(a, cls_key), NULL); /* zeroed at create */
  aco_resume(a);
  aco_resume(b);
  T_PTR_EQ(aco_cls_get(a, cls_key), &va);
  T_PTR_EQ(aco_cls_get(b, cls_key), &vb);
  aco_resume(a);
  aco_resume(b);
  T_EQ(va, 11);
  T_EQ(vb, 21);

  T_PTR_EQ(aco_get_name(a), NULL);
  aco_set_name(a, "alpha");
  aco_set_name(b, "beta");
  T_STR_EQ(aco_get_name(a), "alpha");
  T_STR_EQ(aco_get_name(b), "beta");
  aco_set_name(a, "alpha2");
  T_STR_EQ(aco_get_name(a), "alpha2");
  aco_set_name(b, NULL);
  T_PTR_EQ(aco_get_name(b), NULL);
  aco_destroy(a); /* frees its name entry (valgrind/ASan check leaks) */
  aco_destroy(b);
  aco_share_stack_destroy(ss);

  /* keys run out after ACO_CLS_SLOTS */
  int got = 1; /* cls_key */
  while (aco_cls_key_create() >= 0) got++;
  T_EQ(got, ACO_CLS_SLOTS);
  T_ERRNO(aco_cls_key_create(), EAGAIN);
}

/* ---- aco_reset: an ended coroutine made a new one --------------------------------- */

static int reset_runs;
static void reset_deep_fn(void) { /* ends with a grown save stack */
  volatile char big[600];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)i;
  aco_yield();
  T_EQ(big[599], (char)(599 & 0xff));
  aco_exit();
}
static void reset_fn(void) {
  long *out = aco_get_arg();
  T_PTR_EQ(aco_cls_get(aco_current(), cls_key), NULL); /* dropped */
  aco_cls_set(aco_current(), cls_key, out);
  reset_runs++;
  aco_yield();
  *out += 1;
  aco_exit();
}

static void test_reset(void) {
  setup();
  if (cls_key < 0) cls_key = aco_cls_key_create();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  aco_t *co = aco_create(main_co, ss, 0, reset_deep_fn, NULL);
  aco_t *other = aco_create(main_co, ss, 0, reset_fn, &(long){0});
  aco_resume(co);
  aco_resume(other); /* co's 600+ bytes copied out: its save stack grew */
  aco_resume(co);
  T_EQ(co->is_end, 1);
  void *save = co->save_stack.ptr;
  size_t cap = co->save_stack.sz;
  T_GE(cap, 600);
  aco_set_name(co, "old");
  long v = 41;
  aco_reset(co, reset_fn, &v);
  T_EQ(co->is_end, 0);
  T_PTR_EQ(co->fp, (void *)reset_fn);
  T_PTR_EQ(co->arg, &v);
  T_PTR_EQ(aco_get_name(co), NULL);
  /* kept, as big as it grew (an aligned one's start follows SP mod 32) */
  T_LE(labs((char *)co->save_stack.ptr - (char *)save), 32);
  T_EQ(co->save_stack.sz, cap);
  T_EQ(co->save_stack.valid_sz, 0);
  T_EQ(co->save_stack.ct_save, 0);
  aco_resume(co);
  T_EQ(reset_runs, 2);
  T_PTR_EQ(aco_cls_get(co, cls_key), &v);
  aco_resume(other); /* takes the stack (and ends): co copied out into its
                      * old buffer */
  T_LE(labs((char *)co->save_stack.ptr - (char *)save), 32);
  T_EQ(co->save_stack.sz, cap);
  T_EQ(co->save_stack.ct_save, 1);
  aco_resume(co);
  T_EQ(co->is_end, 1);
  T_EQ(v, 42);
  /* and again, the one that never grew */
  T_EQ(other->is_end, 1);
  long w = 7;
  aco_reset(other, reset_fn, &w);
  aco_resume(other);
  aco_resume(other);
  T_EQ(w, 8);
  aco_destroy(co);
  aco_destroy(other);
  aco_share_stack_destroy(ss);
}

/* ---- layout ------------------------------------------------------------------- */

static void test_struct_sizes(void) {
  /* libaco's aco_t is 160 bytes on x86-64, and so is ours: the CLS
   * pointer fits because is_end and the flags share the FP control word's
   * slot. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
  T_EQ(sizeof(aco_t), 160);
#endif
  printf("sizeof(aco_t) = %zu, sizeof(aco_share_stack_t) = %zu\n",
         sizeof(aco_t), sizeof(aco_share_stack_t));
}

/* ---- acosw keeps aco_gtls_co ------------------------------------------------ */

/* A coroutine that switches back with a bare acosw, as a libaco program
 * may: the thread's running coroutine follows the switch either way. */
static aco_t *seen_inside[3];
static void bare_switch_fn(void) {
  for (int i = 0; i < 3; i++) {
    seen_inside[i] = aco_get_co();
    acosw(aco_gtls_co, aco_gtls_co->main_co);
  }
  aco_exit();
}

static void test_acosw_sets_running(void) {
  setup();
  aco_share_stack_t *ss = aco_share_stack_new(0);
  aco_t *co = aco_create(main_co, ss, 0, bare_switch_fn, NULL);
  for (int i = 0; i < 3; i++) {
    aco_resume(co);
    T_PTR_EQ(seen_inside[i], co);
    T_PTR_EQ(aco_get_co(), main_co);
    T_PTR_EQ(aco_current(), NULL);
  }
  aco_resume(co);
  T_EQ(co->is_end, 1);
  T_PTR_EQ(aco_get_co(), main_co);
  aco_destroy(co);
  aco_share_stack_destroy(ss);
}

T_MAIN({"resume_yield_exit", test_resume_yield_exit},
       {"acosw_sets_running", test_acosw_sets_running},
       {"exit_gives_up_stack", test_exit_gives_up_stack},
       {"copy_on_owner_change", test_copy_on_owner_change},
       {"save_stack_growth", test_save_stack_growth},
       {"many_on_one_stack", test_many_on_one_stack},
       {"several_stacks", test_several_stacks},
       {"destroy_suspended", test_destroy_suspended},
       {"float_across_switches", test_float_across_switches},
       {"share_stack_new2", test_share_stack_new2},
       {"cls_and_names", test_cls_and_names},
       {"reset", test_reset},
       {"struct_sizes", test_struct_sizes})
