/*
 * aco.c - shared-stack coroutines (libaco 1.2 API).  See aco.h for the
 * model and the contract; acosw_<arch>.S for the context switch.
 *
 * Builds on its own (`cc -O2 -c aco.c`): it asks for the GNU extensions it
 * uses (REG_RSP in ucontext.h, malloc_usable_size) before any include.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "aco.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <malloc.h>

/* ---- sanitizer and valgrind hooks ------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define ACO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ACO_ASAN 1
#endif
#endif

#ifdef ACO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__SANITIZE_THREAD__)
#define ACO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ACO_TSAN 1
#endif
#endif

#ifdef ACO_TSAN
/* Each coroutine is a TSan "fiber" so TSan keeps a call stack per
 * coroutine.  The switches are announced by aco_resume on both sides of
 * its acosw, so a yield stays a bare acosw (see aco_switch_in). */
#include <sanitizer/tsan_interface.h>
#define ACO_TSAN_SWITCH(to) __tsan_switch_to_fiber((to)->tsan_fiber_, 0)
#else
#define ACO_TSAN_SWITCH(to) ((void)0)
#endif

/* ACO_NO_VALGRIND leaves the valgrind hooks out (to count a native
 * build's instructions under callgrind: bench/eventer_aco/instr.sh) */
#if defined(__has_include) && !defined(ACO_NO_VALGRIND)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#include <valgrind/memcheck.h>
#define ACO_VALGRIND 1
#endif
#endif

#ifdef ACO_VALGRIND
static int aco_on_valgrind; /* RUNNING_ON_VALGRIND, checked when a share
                            * stack is made */
__attribute__((noinline, cold)) static void aco_vg_make_undefined(void *p,
                                                                  size_t n) {
  VALGRIND_MAKE_MEM_UNDEFINED(p, n);
}
#endif

/* ---- layout contract with the assembly ---------------------------------- */

_Static_assert(offsetof(aco_t, reg) == 0, "reg[] must be first in aco_t");
_Static_assert(sizeof(((aco_t *)0)->reg) == ACO_REG_NUM * sizeof(void *),
               "reg[] size");
_Static_assert(ACO_OFF_SP == ACO_REG_IDX_SP * sizeof(void *), "SP slot");
_Static_assert(ACO_OFF_PC == ACO_REG_IDX_PC * sizeof(void *), "PC slot");
#if defined(__x86_64__)
_Static_assert(ACO_OFF_R15 + 8 == ACO_REG_NUM * 8, "amd64 slots contiguous");
_Static_assert(offsetof(aco_t, fp_mxcsr_) == ACO_OFF_MXCSR, "MXCSR slot");
_Static_assert(offsetof(aco_t, fp_fpucw_) == ACO_OFF_FPUCW, "x87 CW slot");
#if !defined(__SANITIZE_THREAD__)
_Static_assert(sizeof(aco_t) == 160, "aco_t is libaco's size");
#endif
#elif defined(__aarch64__)
_Static_assert(ACO_OFF_FPCR + 8 == ACO_REG_NUM * 8, "FPCR is last slot");
#define ACO_FPENV_IDX (ACO_OFF_FPCR / 8)
#define ACO_X19_IDX (ACO_OFF_X19 / 8)
#endif

/* Live stacks up to ACO_INLINE_COPY_MAX bytes are copied inline
 * (aco_memcpy); bigger ones by memcpy, which runs fastest when source and
 * destination are equally aligned to its 32-byte vectors.  So a save
 * stack that big starts at a 64-byte boundary with ACO_SAVE_SLACK spare
 * bytes (ACO_F_ALIGNED), and each copy-out puts the bytes at the offset
 * that matches the saved SP: save_stack.ptr = boundary + (SP & 31). */
#define ACO_INLINE_COPY_MAX 256
#define ACO_SAVE_ALIGN 64
#define ACO_SAVE_SLACK 32
/* A first save stack given at create (in the coroutine's own block) is
 * laid out that way only from this size on: below it, the up to 88 bytes
 * of slack cost an idle coroutine more than a copy that memcpy does not
 * find equally aligned costs a resume.  A save stack that grows later is
 * laid out by its new size as above. */
#define ACO_SAVE_ALIGN_MIN 1024

/* Bytes between align_retptr and align_highptr: the slot that holds the
 * protector's address on x86-64 (a fresh coroutine's return address).
 * align_validsz counts it, as libaco's does. */
#if defined(__x86_64__)
#define ACO_RETSLOT_SZ 8
#else
#define ACO_RETSLOT_SZ 0
#endif

/* aco_flags_ bits */
#define ACO_F_NAMED 0x01 /* has an entry in the name table */
#define ACO_F_INLINE 0x02 /* save_stack.ptr points into the aco_t block */
#define ACO_F_ALIGNED 0x04 /* save stack laid out as ACO_SAVE_SLACK says */

/* what to free for a save stack that is not ACO_F_INLINE */
static inline void *aco_save_stack_block(const aco_t *co) {
  uintptr_t p = (uintptr_t)co->save_stack.ptr;
  if (co->aco_flags_ & ACO_F_ALIGNED) p &= ~(uintptr_t)(ACO_SAVE_ALIGN - 1);
  return (void *)p;
}

/* ---- per-thread state ------------------------------------------------------ */

__thread aco_t *aco_gtls_co;
static __thread aco_cofuncp_t aco_gtls_last_word_fp;
static __thread void *aco_gtls_fpenv; /* initial FP control state */
static __thread int aco_gtls_inited;
#ifdef ACO_ASAN
/* the thread's own stack and fake stack, as ASan knew them before the
 * first switch onto a share stack */
static __thread const void *aco_gtls_main_stack_bottom;
static __thread size_t aco_gtls_main_stack_size;
static __thread void *aco_gtls_main_fake_stack;
#endif

/* assembly (acosw_<arch>.S) */
extern void aco_funcp_protector_asm(void) __asm__("aco_funcp_protector_asm");
#if defined(__aarch64__)
extern void aco_co_entry_asm(void) __asm__("aco_co_entry_asm");
#endif

/* ---- messages ------------------------------------------------------------ */

void aco_abortf(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof(buf) - 2) n = (int)sizeof(buf) - 2;
  buf[n++] = '\n';
  /* write(2), not stdio: we may be on a broken stack or in a handler */
  ssize_t w = write(2, buf, (size_t)n);
  (void)w;
  abort();
}

/* ---- names (rare; kept out of aco_t to keep it small) ------------------ */

#define ACO_NAME_BUCKETS 256
typedef struct aco_name_node {
  const aco_t *co;
  const char *name;
  struct aco_name_node *next;
} aco_name_node_t;
static aco_name_node_t *aco_names[ACO_NAME_BUCKETS];
static pthread_mutex_t aco_names_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t aco_name_bucket(const aco_t *co) {
  uintptr_t h = (uintptr_t)co;
  h ^= h >> 17;
  h *= 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 56) % ACO_NAME_BUCKETS;
}

static void aco_name_remove_locked(const aco_t *co) {
  aco_name_node_t **pp = &aco_names[aco_name_bucket(co)];
  while (*pp) {
    if ((*pp)->co == co) {
      aco_name_node_t *dead = *pp;
      *pp = dead->next;
      free(dead);
      return;
    }
    pp = &(*pp)->next;
  }
}

void aco_set_name(aco_t *co, const char *name) {
  aco_assertptr(co);
  pthread_mutex_lock(&aco_names_lock);
  if (co->aco_flags_ & ACO_F_NAMED) aco_name_remove_locked(co);
  co->aco_flags_ &= (unsigned char)~ACO_F_NAMED;
  if (name) {
    aco_name_node_t *n = malloc(sizeof(*n));
    aco_assertalloc_ptr(n);
    n->co = co;
    n->name = name;
    size_t b = aco_name_bucket(co);
    n->next = aco_names[b];
    aco_names[b] = n;
    co->aco_flags_ |= ACO_F_NAMED;
  }
  pthread_mutex_unlock(&aco_names_lock);
}

static const char *aco_name_lookup(const aco_t *co, int may_block) {
  if (!(co->aco_flags_ & ACO_F_NAMED)) return NULL;
  if (may_block)
    pthread_mutex_lock(&aco_names_lock);
  else if (pthread_mutex_trylock(&aco_names_lock) != 0)
    return NULL;
  const char *name = NULL;
  for (aco_name_node_t *n = aco_names[aco_name_bucket(co)]; n; n = n->next)
    if (n->co == co) {
      name = n->name;
      break;
    }
  pthread_mutex_unlock(&aco_names_lock);
  return name;
}

const char *aco_get_name(const aco_t *co) {
  aco_assertptr(co);
  return aco_name_lookup(co, 1);
}

/* ---- coroutine-local storage keys ------------------------------------- */

static atomic_int aco_cls_next;

int aco_cls_key_create(void) {
  int k = atomic_fetch_add(&aco_cls_next, 1);
  if (k >= ACO_CLS_SLOTS) {
    atomic_fetch_sub(&aco_cls_next, 1);
    errno = EAGAIN;
    return -1;
  }
  return k;
}

void aco_cls_set(aco_t *co, int key, void *value) {
  aco_assert(co != NULL && key >= 0 && key < ACO_CLS_SLOTS);
  if (co->cls == NULL) {
    if (value == NULL) return;
    co->cls = calloc(ACO_CLS_SLOTS, sizeof(void *));
    aco_assertalloc_ptr(co->cls);
  }
  co->cls[key] = value;
}

/* ---- stack overflow reporting -------------------------------------------
 *
 * A guard-page hit raises SIGSEGV with the stack pointer inside the guard
 * page, so the handler must run on an alternate signal stack
 * (SA_ONSTACK; aco_thread_init makes sure the thread has one).  Only
 * faults that are a share-stack overflow of the running coroutine are
 * ours; every other SIGSEGV goes to the handler that was installed before
 * us (for a Go program, the Go runtime's, which turns nil dereferences in
 * Go code into panics), exactly as if we were not there.
 */

static struct sigaction aco_prev_segv;
static pthread_once_t aco_segv_once = PTHREAD_ONCE_INIT;

/* async-signal-safe formatting into a fixed buffer */
typedef struct {
  char b[512];
  size_t n;
} aco_sbuf_t;

static void sbuf_s(aco_sbuf_t *s, const char *str) {
  while (*str && s->n < sizeof(s->b) - 1) s->b[s->n++] = *str++;
}

static void sbuf_hex(aco_sbuf_t *s, uintptr_t v) {
  char tmp[2 + 16];
  int i = 0;
  do {
    tmp[i++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  sbuf_s(s, "0x");
  while (i > 0 && s->n < sizeof(s->b) - 1) s->b[s->n++] = tmp[--i];
}

static void sbuf_dec(aco_sbuf_t *s, size_t v) {
  char tmp[24];
  int i = 0;
  do {
    tmp[i++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (i > 0 && s->n < sizeof(s->b) - 1) s->b[s->n++] = tmp[--i];
}

static uintptr_t aco_ucontext_sp(void *uctx) {
  ucontext_t *uc = uctx;
#if defined(__x86_64__)
  return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
  return (uintptr_t)uc->uc_mcontext.sp;
#endif
}

static void aco_segv_handler(int sig, siginfo_t *si, void *uctx) {
  int saved_errno = errno;
  aco_t *co = aco_gtls_co;
  if (co != NULL && co->main_co != NULL && co->share_stack != NULL &&
      co->share_stack->guard_page_enabled) {
    aco_share_stack_t *ss = co->share_stack;
    uintptr_t addr = (uintptr_t)si->si_addr;
    uintptr_t guard_lo = (uintptr_t)ss->real_ptr;
    uintptr_t guard_hi = (uintptr_t)ss->ptr;
    uintptr_t sp = aco_ucontext_sp(uctx);
    /* a hit in the guard page, or a fault just below the stack with the
     * stack pointer already past its bottom (a frame larger than a page) */
    if ((addr >= guard_lo && addr < guard_hi) ||
        (sp < guard_hi && sp + (1u << 20) > guard_lo && addr < guard_hi &&
         addr + (1u << 20) > guard_lo)) {
      aco_sbuf_t s = {.n = 0};
      const char *name = aco_name_lookup(co, 0);
      sbuf_s(&s, "aco: stack overflow in coroutine ");
      if (name) {
        sbuf_s(&s, "\"");
        sbuf_s(&s, name);
        sbuf_s(&s, "\" ");
      }
      sbuf_hex(&s, (uintptr_t)co);
      sbuf_s(&s, " (fp ");
      sbuf_hex(&s, (uintptr_t)co->fp);
      sbuf_s(&s, "): it ran past the bottom of its share stack ");
      sbuf_hex(&s, guard_hi);
      sbuf_s(&s, " (");
      sbuf_dec(&s, ss->sz);
      sbuf_s(&s, " bytes) into the guard page; fault at ");
      sbuf_hex(&s, addr);
      sbuf_s(&s, ", sp ");
      sbuf_hex(&s, sp);
      sbuf_s(&s, "\n");
      ssize_t w = write(2, s.b, s.n);
      (void)w;
      /* abort() with the default SIGABRT action: no handler can resume a
       * coroutine whose stack is gone */
      signal(SIGABRT, SIG_DFL);
      abort();
    }
  }
  errno = saved_errno;
  /* not ours: behave as the previous disposition would */
  if (aco_prev_segv.sa_flags & SA_SIGINFO) {
    if (aco_prev_segv.sa_sigaction) {
      aco_prev_segv.sa_sigaction(sig, si, uctx);
      return;
    }
  } else if (aco_prev_segv.sa_handler != SIG_DFL &&
             aco_prev_segv.sa_handler != SIG_IGN) {
    aco_prev_segv.sa_handler(sig);
    return;
  }
  /* default: reinstate it; a fault re-executes and kills, a sent signal
   * is raised again */
  signal(sig, SIG_DFL);
  if (si->si_code <= 0) raise(sig);
}

static void aco_segv_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = aco_segv_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  if (sigaction(SIGSEGV, &sa, &aco_prev_segv) != 0)
    aco_abortf("aco: sigaction(SIGSEGV): %s", strerror(errno));
}

/* ---- thread init -------------------------------------------------------------- */

static pthread_key_t aco_altstack_key;
static pthread_once_t aco_altstack_once = PTHREAD_ONCE_INIT;
#define ACO_ALTSTACK_SZ (64 * 1024)

static void aco_altstack_free(void *mem) {
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem) {
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
  }
  munmap(mem, ACO_ALTSTACK_SZ);
}

static void aco_altstack_key_init(void) {
  if (pthread_key_create(&aco_altstack_key, aco_altstack_free) != 0)
    aco_abortf("aco: pthread_key_create failed");
}

static void *aco_read_fpenv(void) {
#if defined(__x86_64__)
  uint32_t mxcsr;
  uint16_t fpucw;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fpucw));
  return (void *)((uintptr_t)mxcsr | ((uintptr_t)fpucw << 32));
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  return (void *)(uintptr_t)fpcr;
#endif
}

void aco_save_fpucw_mxcsr(void *p) {
  aco_assertptr(p);
#if defined(__x86_64__)
  uint16_t fpucw;
  uint32_t mxcsr;
  __asm__ volatile("fnstcw %0" : "=m"(fpucw));
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  memcpy(p, &fpucw, sizeof(fpucw));
  memcpy((char *)p + 4, &mxcsr, sizeof(mxcsr));
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  memcpy(p, &fpcr, sizeof(fpcr));
#endif
}

void aco_runtime_test(void) {
  _Static_assert(sizeof(void *) == 8, "64-bit pointers");
  _Static_assert(sizeof(int) >= 4 && sizeof(int) <= sizeof(size_t),
                 "int of 4 bytes or more, no wider than size_t");
  /* the layout contract, checked again where the switch reads it (a
   * program built against another aco.h than this library's fails here) */
  aco_t probe;
  memset(&probe, 0, sizeof(probe));
  probe.reg[ACO_REG_IDX_SP] = &probe;
  if (*(void **)((char *)&probe + ACO_OFF_SP) != &probe)
    aco_abortf("aco_runtime_test: reg[ACO_REG_IDX_SP] is not at offset %d",
               ACO_OFF_SP);
#if defined(__x86_64__)
  probe.fp_mxcsr_ = 0x1f80u;
  uint32_t m;
  memcpy(&m, (char *)&probe + ACO_OFF_MXCSR, sizeof(m));
  if (m != 0x1f80u)
    aco_abortf("aco_runtime_test: MXCSR slot is not at offset %d",
               ACO_OFF_MXCSR);
#endif
  long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0 || (pg & (pg - 1)) != 0)
    aco_abortf("aco_runtime_test: page size %ld is not a power of two", pg);
}

void aco_thread_init(aco_cofuncp_t last_word_co_fp) {
  aco_gtls_last_word_fp = last_word_co_fp;
  aco_gtls_fpenv = aco_read_fpenv();
  aco_gtls_inited = 1;
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
    pthread_once(&aco_altstack_once, aco_altstack_key_init);
    void *mem = mmap(NULL, ACO_ALTSTACK_SZ, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    aco_assertalloc_bool(mem != MAP_FAILED);
    stack_t st = {.ss_sp = mem, .ss_size = ACO_ALTSTACK_SZ, .ss_flags = 0};
    if (sigaltstack(&st, NULL) != 0)
      aco_abortf("aco_thread_init: sigaltstack: %s", strerror(errno));
    pthread_setspecific(aco_altstack_key, mem);
  }
}

/* ---- share stacks ---------------------------------------------------------- */

typedef struct {
  aco_share_stack_t pub;
  unsigned vg_stack_id; /* valgrind's id for this stack */
} aco_share_stack_priv_t;

aco_share_stack_t *aco_share_stack_new(size_t sz) {
  return aco_share_stack_new2(sz, 1);
}

aco_share_stack_t *aco_share_stack_new2(size_t sz, char guard_page_enabled) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  if (sz == 0) sz = 2u << 20;
  if (sz < 4096) sz = 4096;
  aco_size_t_safe_add_assert(sz, pg - 1);
  sz = (sz + pg - 1) & ~(pg - 1);
  size_t real_sz = sz;
  if (guard_page_enabled) {
    aco_size_t_safe_add_assert(sz, pg);
    real_sz += pg;
  }
  aco_share_stack_priv_t *p = calloc(1, sizeof(*p));
  aco_assertalloc_ptr(p);
  aco_share_stack_t *ss = &p->pub;
  void *mem = mmap(NULL, real_sz, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  aco_assertalloc_bool(mem != MAP_FAILED);
  ss->real_ptr = mem;
  ss->real_sz = real_sz;
  ss->guard_page_enabled = guard_page_enabled ? 1 : 0;
  if (guard_page_enabled) {
    if (mprotect(mem, pg, PROT_NONE) != 0)
      aco_abortf("aco_share_stack_new2: mprotect(guard page): %s",
                 strerror(errno));
    ss->ptr = (char *)mem + pg;
    pthread_once(&aco_segv_once, aco_segv_install);
  } else {
    ss->ptr = mem;
  }
  ss->sz = sz;
  uintptr_t top = ((uintptr_t)ss->ptr + sz) & ~(uintptr_t)15;
  ss->align_highptr = (void *)top;
#if defined(__x86_64__)
  /* A coroutine starts as if called: its return address (the protector)
   * sits in a slot that is 8 mod 16, and its live stack begins below. */
  ss->align_retptr = (void *)(top - 8);
  *(void **)ss->align_retptr = (void *)aco_funcp_protector_asm;
#else
  ss->align_retptr = (void *)top;
#endif
  ss->align_limit = (size_t)((uintptr_t)ss->align_retptr - (uintptr_t)ss->ptr);
  ss->owner = NULL;
  ss->align_validsz = 0;
#ifdef ACO_VALGRIND
  if (RUNNING_ON_VALGRIND) aco_on_valgrind = 1;
  p->vg_stack_id = VALGRIND_STACK_REGISTER(ss->ptr, (char *)ss->ptr + sz);
#endif
  return ss;
}

void aco_share_stack_destroy(aco_share_stack_t *ss) {
  aco_assertptr(ss);
  aco_share_stack_priv_t *p = (aco_share_stack_priv_t *)ss;
#ifdef ACO_VALGRIND
  VALGRIND_STACK_DEREGISTER(p->vg_stack_id);
#endif
#ifdef ACO_ASAN
  ASAN_UNPOISON_MEMORY_REGION(ss->ptr, ss->sz);
#endif
  munmap(ss->real_ptr, ss->real_sz);
  free(p);
}

/* ---- coroutines ------------------------------------------------------------ */

/* Reached (on the share stack) when a coroutine function returns. */
void aco_funcp_protector(void) __asm__("aco_funcp_protector");
void aco_funcp_protector(void) {
  aco_t *co = aco_gtls_co;
  if (aco_gtls_last_word_fp != NULL) aco_gtls_last_word_fp();
  const char *name = co ? aco_name_lookup(co, 0) : NULL;
  aco_abortf("aco: coroutine %s%s%s%p (fp %p) returned from its function; "
             "a coroutine must end with aco_exit()",
             name ? "\"" : "", name ? name : "", name ? "\" " : "",
             (void *)co, co ? (void *)co->fp : NULL);
}

_Static_assert(sizeof(aco_t) % 8 == 0, "aco_ext() must be 8-byte aligned");

aco_t *aco_create(aco_t *main_co, aco_share_stack_t *share_stack,
                  size_t save_stack_sz, aco_cofuncp_t fp, void *arg) {
  return aco_create_ext(main_co, share_stack, save_stack_sz, fp, arg, 0);
}

static void aco_init_regs(aco_t *co, aco_cofuncp_t fp);

aco_t *aco_create_ext(aco_t *main_co, aco_share_stack_t *share_stack,
                      size_t save_stack_sz, aco_cofuncp_t fp, void *arg,
                      size_t ext_sz) {
  if (aco_unlikely(!aco_gtls_inited))
    aco_abortf("aco_create: aco_thread_init() was never called on this "
               "thread; a coroutine created here would start with a zeroed "
               "MXCSR/FPU control word");
  if (share_stack == NULL) {
    /* the main coroutine: stands for the thread's own stack */
    aco_assert(main_co == NULL && ext_sz == 0);
    aco_t *co = calloc(1, sizeof(aco_t));
    aco_assertalloc_ptr(co);
    co->fp = fp;
    co->arg = arg;
#ifdef ACO_TSAN
    co->tsan_fiber_ = __tsan_get_current_fiber();
#endif
    return co;
  }
  if (aco_unlikely(main_co == NULL || main_co->main_co != NULL))
    aco_abortf("aco_create: main_co %p is not a main coroutine",
               (void *)main_co);
  aco_assertptr(fp);
  aco_assert(ext_sz < ((size_t)1 << 20));
  aco_size_t_safe_add_assert(save_stack_sz, 7 + sizeof(aco_t) + ext_sz + 7 +
                                                ACO_SAVE_ALIGN + ACO_SAVE_SLACK);
  /* One allocation: the coroutine, its ext bytes and, when a size is
   * given, its first save stack right after them, as big as malloc's chunk
   * makes room for.  The save stack is only ever copied, so 8-byte
   * alignment is enough (16 would cost every coroutine whose header ends
   * at 8 mod 16 a 16-byte malloc step), except for one big enough
   * (ACO_SAVE_ALIGN_MIN) that memcpy's alignment matters more than its
   * slack (see ACO_SAVE_SLACK).  Without a size the save stack
   * is allocated by the first copy-out, exactly as big as that copy: a
   * fixed default would be too small for most coroutines (a second
   * allocation, the first one wasted) or too big for the rest. */
  size_t save_off = (sizeof(aco_t) + ext_sz + 7) & ~(size_t)7;
  int aligned = save_stack_sz >= ACO_SAVE_ALIGN_MIN;
  size_t alloc = sizeof(aco_t) + ext_sz;
  if (save_stack_sz != 0)
    alloc = save_off + ((save_stack_sz + 7) & ~(size_t)7) +
            (aligned ? ACO_SAVE_ALIGN - 8 + ACO_SAVE_SLACK : 0);
  aco_t *co = malloc(alloc);
  aco_assertalloc_ptr(co);
  memset(co, 0, sizeof(aco_t) + ext_sz);
  if (save_stack_sz != 0) {
    char *save = (char *)co + save_off;
    if (aligned)
      save = (char *)(((uintptr_t)save + ACO_SAVE_ALIGN - 1) &
                      ~(uintptr_t)(ACO_SAVE_ALIGN - 1));
    size_t usable = malloc_usable_size(co);
    if (usable < alloc) usable = alloc;
    co->save_stack.ptr = save;
    co->save_stack.sz = (usable - (size_t)(save - (char *)co) -
                         (aligned ? ACO_SAVE_SLACK : 0)) & ~(size_t)7;
    co->aco_flags_ = ACO_F_INLINE | (aligned ? ACO_F_ALIGNED : 0);
  }
  co->main_co = main_co;
  co->arg = arg;
  co->fp = fp;
  co->share_stack = share_stack;
  aco_init_regs(co, fp);
  return co;
}

/* A new coroutine's registers: its first resume enters fp on an empty
 * share stack with the thread's initial floating-point control state. */
static void aco_init_regs(aco_t *co, aco_cofuncp_t fp) {
  co->reg[ACO_REG_IDX_SP] = co->share_stack->align_retptr;
#if defined(__x86_64__)
  co->fp_mxcsr_ = (uint32_t)(uintptr_t)aco_gtls_fpenv;
  co->fp_fpucw_ = (uint16_t)((uintptr_t)aco_gtls_fpenv >> 32);
#else
  co->reg[ACO_FPENV_IDX] = aco_gtls_fpenv;
#endif
#ifdef ACO_TSAN
  co->tsan_fiber_ = __tsan_create_fiber(0);
#endif
#if defined(__x86_64__)
  co->reg[ACO_REG_IDX_PC] = (void *)fp;
#elif defined(__aarch64__)
  /* aco_co_entry_asm sets lr to the protector and branches to x19 */
  co->reg[ACO_REG_IDX_PC] = (void *)aco_co_entry_asm;
  co->reg[ACO_X19_IDX] = (void *)fp;
#endif
}

void aco_reset(aco_t *co, aco_cofuncp_t fp, void *arg) {
  aco_assertptr(co);
  aco_assertptr(fp);
  if (co->main_co == NULL)
    aco_abortf("aco_reset: %p is a main coroutine", (void *)co);
  if (!co->is_end)
    aco_abortf("aco_reset: coroutine %p has not ended; only an ended "
               "coroutine can be reset", (void *)co);
  if (co->aco_flags_ & ACO_F_NAMED) aco_set_name(co, NULL);
  free(co->cls);
  co->cls = NULL;
  /* aco_exit gave the share stack up and emptied the save stack */
  aco_assert(co->share_stack->owner != co && co->save_stack.valid_sz == 0);
#ifdef ACO_TSAN
  __tsan_destroy_fiber(co->tsan_fiber_);
#endif
  memset(co->reg, 0, sizeof(co->reg));
  co->is_end = 0;
  co->arg = arg;
  co->fp = fp;
  co->save_stack.max_cpsz = 0;
  co->save_stack.ct_save = 0;
  co->save_stack.ct_restore = 0;
  aco_init_regs(co, fp);
}

/* memcpy for the live bytes.  Most live stacks are a few dozen to a few
 * hundred bytes; for those (up to ACO_INLINE_COPY_MAX), 16-byte moves
 * inline cost less than the call into the C library's memcpy and its size
 * dispatch.  A live stack starts at a 16-byte aligned SP (the psABIs keep
 * it so at calls) and is a multiple of 8 bytes (on x86-64 nearly always
 * 16n + 8): whole 16-byte blocks (one indirect jump into the run) and an
 * 8-byte tail keep every access aligned.  The two ranges never overlap
 * (share stack and heap). */
static inline void aco_copy16(char *d, const char *s) {
  __builtin_memcpy(d, s, 16);
}
/* n <= ACO_INLINE_COPY_MAX; never calls out (its callers keep no
 * registers across it). */
__attribute__((always_inline)) static inline void aco_copy_small(
    char *d, const char *s, size_t n) {
  switch (n >> 4) { /* whole blocks: 0..16 */
  case 16: aco_copy16(d + 240, s + 240); /* fall through */
  case 15: aco_copy16(d + 224, s + 224); /* fall through */
  case 14: aco_copy16(d + 208, s + 208); /* fall through */
  case 13: aco_copy16(d + 192, s + 192); /* fall through */
  case 12: aco_copy16(d + 176, s + 176); /* fall through */
  case 11: aco_copy16(d + 160, s + 160); /* fall through */
  case 10: aco_copy16(d + 144, s + 144); /* fall through */
  case 9: aco_copy16(d + 128, s + 128); /* fall through */
  case 8: aco_copy16(d + 112, s + 112); /* fall through */
  case 7: aco_copy16(d + 96, s + 96); /* fall through */
  case 6: aco_copy16(d + 80, s + 80); /* fall through */
  case 5: aco_copy16(d + 64, s + 64); /* fall through */
  case 4: aco_copy16(d + 48, s + 48); /* fall through */
  case 3: aco_copy16(d + 32, s + 32); /* fall through */
  case 2: aco_copy16(d + 16, s + 16); /* fall through */
  case 1: aco_copy16(d, s); /* fall through */
  default: break;
  }
  size_t i = n & ~(size_t)15;
  if (n & 8) {
    __builtin_memcpy(d + i, s + i, 8);
    i += 8;
  }
  if (aco_unlikely(n & 7)) { /* not from a psABI-conforming SP */
    if (n & 4) {
      __builtin_memcpy(d + i, s + i, 4);
      i += 4;
    }
    if (n & 2) {
      __builtin_memcpy(d + i, s + i, 2);
      i += 2;
    }
    if (n & 1) d[i] = s[i];
  }
}

__attribute__((always_inline)) static inline void aco_memcpy(
    void *dst, const void *src, size_t n) {
  if (n > ACO_INLINE_COPY_MAX)
    memcpy(dst, src, n);
  else
    aco_copy_small(dst, src, n);
}

/* copies between the share stack and a save stack; under ASan the share
 * stack's shadow still describes whichever coroutine last ran there, so
 * the live range is unpoisoned before it is read or rewritten */
__attribute__((always_inline)) static inline void aco_stack_copy(
    void *dst, const void *src, size_t n, void *shared_range) {
#ifdef ACO_ASAN
  ASAN_UNPOISON_MEMORY_REGION(shared_range, n);
#endif
#ifdef ACO_VALGRIND
  /* Copying in: memcheck may have marked this part of the share stack
   * unaddressable (below the SP of a shallower coroutine that ran here);
   * make it addressable, and the copy gives it the saved definedness.
   * Behind a flag, so the client request's frame costs nothing natively. */
  if (aco_unlikely(aco_on_valgrind) && dst == shared_range)
    aco_vg_make_undefined(shared_range, n);
#endif
  (void)shared_range;
  aco_memcpy(dst, src, n);
}

/* The first save stack is exactly as big as the first copy; later ones
 * at least double, so a coroutine that keeps getting deeper reallocates
 * only a few times. */
__attribute__((noinline, cold)) static void aco_save_stack_grow(
    aco_t *co, size_t need) {
  size_t nsz = need;
  if (co->save_stack.sz != 0) {
    nsz = co->save_stack.sz;
    while (nsz < need) {
      aco_size_t_safe_add_assert(nsz, nsz);
      nsz <<= 1;
    }
  }
  int aligned = nsz > ACO_INLINE_COPY_MAX;
  void *p = NULL;
  if (aligned) {
    aco_size_t_safe_add_assert(nsz, ACO_SAVE_SLACK);
    if (posix_memalign(&p, ACO_SAVE_ALIGN, nsz + ACO_SAVE_SLACK) != 0)
      p = NULL;
  } else {
    p = malloc(nsz);
  }
  aco_assertalloc_ptr(p);
  size_t usable = malloc_usable_size(p);
  if (aligned) usable -= ACO_SAVE_SLACK;
  if (usable > nsz) nsz = usable;
  if (!(co->aco_flags_ & ACO_F_INLINE)) free(aco_save_stack_block(co));
  co->aco_flags_ &= (unsigned char)~(ACO_F_INLINE | ACO_F_ALIGNED);
  if (aligned) co->aco_flags_ |= ACO_F_ALIGNED;
  co->save_stack.ptr = p;
  co->save_stack.sz = nsz;
}

/* Copies the owner's live bytes out and co's back in. */
static inline void aco_take_share_stack(
    aco_share_stack_t *ss, aco_t *co) {
  aco_t *owner = ss->owner;
  if (owner != NULL) {
    aco_assert(owner->share_stack == ss);
    char *sp = owner->reg[ACO_REG_IDX_SP];
    size_t n = (size_t)((char *)ss->align_retptr - sp);
    if (aco_unlikely(n > ss->align_limit))
      aco_abortf("aco_resume: coroutine %p has a saved stack pointer %p "
                 "outside its share stack (corrupted coroutine)",
                 (void *)owner, (void *)sp);
    if (aco_unlikely(n > owner->save_stack.sz)) aco_save_stack_grow(owner, n);
    if (owner->aco_flags_ & ACO_F_ALIGNED) /* match SP's alignment */
      owner->save_stack.ptr =
          (char *)aco_save_stack_block(owner) + ((uintptr_t)sp & 31);
    aco_stack_copy(owner->save_stack.ptr, sp, n, sp);
    owner->save_stack.valid_sz = n;
    owner->save_stack.ct_save++;
    if (n > owner->save_stack.max_cpsz) owner->save_stack.max_cpsz = n;
  }
  ss->owner = co;
  size_t n = co->save_stack.valid_sz;
#ifdef ACO_VALGRIND
  if (aco_unlikely(aco_on_valgrind)) {
    /* memcheck does not follow SP across a switch: what lies just below
     * co's SP (the red zone, the next frames it pushes) may still be
     * marked unaddressable from a coroutine that ran shallower here */
    char *sp = co->reg[ACO_REG_IDX_SP];
    char *lo = sp - 4096 > (char *)ss->ptr ? sp - 4096 : (char *)ss->ptr;
    aco_vg_make_undefined(lo, (size_t)(sp - lo));
  }
#endif
  if (n != 0) {
    char *sp = co->reg[ACO_REG_IDX_SP];
    aco_stack_copy(sp, co->save_stack.ptr, n, sp);
    co->save_stack.ct_restore++;
  }
  ss->align_validsz = n + ACO_RETSLOT_SZ;
}

__attribute__((noinline, cold, noreturn)) static void aco_resume_misuse(
    aco_t *co) {
  if (co == NULL) aco_abortf("aco_resume: NULL coroutine");
  if (co->main_co == NULL)
    aco_abortf("aco_resume: %p is a main coroutine; only non-main "
               "coroutines can be resumed", (void *)co);
  if (co->is_end)
    aco_abortf("aco_resume: coroutine %p has ended (aco_exit was called); "
               "an ended coroutine can't be resumed, only destroyed",
               (void *)co);
  aco_abortf("aco_resume: called from inside coroutine %p; aco_resume may "
             "only be called from the main coroutine", (void *)aco_gtls_co);
}

/* Switches to co (its stack already in place); returns when co yields.
 *
 * acosw sets aco_gtls_co to the context it enters, in both directions, so
 * nothing is left to do after the switch: in a plain build this is the
 * last thing aco_resume does and the compiler makes it a tail call (a
 * jump).  The coroutine's yield then resumes aco_resume's caller
 * directly, and no return pairs with a call it did not make: a yield
 * followed by aco_resume's own return would make the CPU's return-address
 * predictor miss once per resume.
 *
 * Under a sanitizer both directions of the switch are announced here, on
 * the main stack: right before acosw that we go to co, right after it
 * returns that we are back.  So a coroutine yields (and ends) with a bare
 * acosw from its own frame and nothing runs on its stack below it: its
 * copies are the size libaco's are.  Nothing instrumented runs between
 * an announcement and the switch it announces (acosw is assembly), and
 * ASan lets start and finish come together: the fiber state is per
 * thread, not per stack. */
__attribute__((always_inline)) static inline void aco_switch_in(
    aco_t *co, aco_share_stack_t *ss) {
  (void)ss;
#ifdef ACO_ASAN
  __sanitizer_start_switch_fiber(&aco_gtls_main_fake_stack, ss->ptr, ss->sz);
  __sanitizer_finish_switch_fiber(NULL, &aco_gtls_main_stack_bottom,
                                  &aco_gtls_main_stack_size);
#endif
  ACO_TSAN_SWITCH(co);
  acosw(co->main_co, co);
#if defined(ACO_ASAN) || defined(ACO_TSAN)
  ACO_TSAN_SWITCH(co->main_co);
#endif
#ifdef ACO_ASAN
  __sanitizer_start_switch_fiber(NULL, aco_gtls_main_stack_bottom,
                                 aco_gtls_main_stack_size);
  __sanitizer_finish_switch_fiber(aco_gtls_main_fake_stack, NULL, NULL);
#endif
}

/* aco_resume when co's share stack has another owner (or none), any
 * case: growth, big copies, sanitizers, the first resume. */
__attribute__((noinline)) static void aco_resume_take(aco_t *co) {
  aco_share_stack_t *ss = co->share_stack;
  aco_take_share_stack(ss, co);
  aco_switch_in(co, ss);
}

#ifdef ACO_VALGRIND
#define ACO_ON_VALGRIND aco_on_valgrind
#else
#define ACO_ON_VALGRIND 0
#endif

/* aco_resume when co's share stack has another owner: the usual case of
 * small live stacks on both sides (copied inline, no calls, so this frame
 * keeps one register), else aco_resume_take.  Both are functions of their
 * own so that aco_resume, for co already owning its stack, stays a few
 * instructions with a small frame. */
__attribute__((noinline)) static void aco_resume_swap(aco_t *co) {
#ifndef ACO_ASAN
  aco_share_stack_t *ss = co->share_stack;
  aco_t *owner = ss->owner;
  size_t in = co->save_stack.valid_sz;
  if (aco_likely(owner != NULL && in <= ACO_INLINE_COPY_MAX &&
                 !ACO_ON_VALGRIND)) {
    char *osp = owner->reg[ACO_REG_IDX_SP];
    size_t out = (size_t)((char *)ss->align_retptr - osp);
    /* out within the share stack, and the same checks as in
     * aco_take_share_stack (which reports them) */
    if (aco_likely(out <= ACO_INLINE_COPY_MAX &&
                   out <= owner->save_stack.sz && owner->share_stack == ss)) {
      aco_copy_small(owner->save_stack.ptr, osp, out);
      owner->save_stack.valid_sz = out;
      owner->save_stack.ct_save++;
      if (out > owner->save_stack.max_cpsz) owner->save_stack.max_cpsz = out;
      ss->owner = co;
      if (in != 0) {
        aco_copy_small(co->reg[ACO_REG_IDX_SP], co->save_stack.ptr, in);
        co->save_stack.ct_restore++;
      }
      ss->align_validsz = in + ACO_RETSLOT_SZ;
      aco_switch_in(co, ss);
      return;
    }
  }
#endif
  aco_resume_take(co);
}

/* aco_resume after its checks. */
__attribute__((always_inline)) static inline void aco_resume_in(aco_t *co) {
  aco_share_stack_t *ss = co->share_stack;
  if (ss->owner != co) {
    aco_resume_swap(co);
    return;
  }
  aco_switch_in(co, ss);
}

void aco_resume(aco_t *co) {
  aco_t *cur = aco_gtls_co;
  if (aco_unlikely(co == NULL || co->main_co == NULL || co->is_end))
    aco_resume_misuse(co);
  /* only from a main coroutine: normally co's own (a cheap compare); else
   * before the thread's first resume (NULL) or from another main co */
  if (aco_unlikely(cur != co->main_co) && cur != NULL && cur->main_co != NULL)
    aco_resume_misuse(co);
  aco_resume_in(co);
}

void aco_resume_checked_(aco_t *co) { aco_resume_in(co); }

void aco_yield_misuse_(const char *file, int line) {
  aco_t *cur = aco_gtls_co;
  aco_abortf("aco_yield1 at %s:%d: the coroutine given is not the running "
             "non-main coroutine (running: %p%s); only a running coroutine "
             "can yield", file, line, (void *)cur,
             cur == NULL ? ", no coroutine was ever resumed"
             : cur->main_co == NULL ? ", the main coroutine" : "");
}

void aco_exit1_(aco_t *co) {
  if (aco_unlikely(co == NULL || co->main_co == NULL || co != aco_gtls_co))
    aco_abortf("aco_exit1: %p is not the running non-main coroutine "
               "(running: %p)", (void *)co, (void *)aco_gtls_co);
  co->is_end = 1;
  aco_assert(co->share_stack->owner == co);
#ifdef ACO_ASAN
  /* Nobody will copy this stack out or return through its frames: clear
   * the redzones they left, or the next coroutine on this stack trips
   * over them.  This is what ASan does before any call that does not
   * return: it clears from just below here to the top of the current
   * stack, which aco_switch_in announced as the share stack. */
  __asan_handle_no_return();
#endif
  /* give the stack up without saving: nothing on it is needed again */
  co->share_stack->owner = NULL;
  co->share_stack->align_validsz = 0;
  co->save_stack.valid_sz = 0;
  acosw(co, co->main_co);
  aco_abortf("aco_exit1: ended coroutine %p was switched to again",
             (void *)co);
}

void aco_destroy(aco_t *co) {
  aco_assertptr(co);
  if (co->main_co != NULL && co == aco_gtls_co)
    aco_abortf("aco_destroy: coroutine %p destroyed while it runs",
               (void *)co);
  if (co->aco_flags_ & ACO_F_NAMED) aco_set_name(co, NULL);
  free(co->cls);
  if (co->main_co == NULL) {
    if (aco_gtls_co == co) aco_gtls_co = NULL;
    free(co);
    return;
  }
  if (co->share_stack->owner == co) {
    co->share_stack->owner = NULL;
    co->share_stack->align_validsz = 0;
#ifdef ACO_ASAN
    /* dropped without a copy-out: clear the redzones its frames left */
    char *sp = co->reg[ACO_REG_IDX_SP];
    ASAN_UNPOISON_MEMORY_REGION(sp, (size_t)((char *)co->share_stack->align_retptr - sp));
#endif
  }
  if (!(co->aco_flags_ & ACO_F_INLINE)) free(aco_save_stack_block(co));
#ifdef ACO_TSAN
  __tsan_destroy_fiber(co->tsan_fiber_);
#endif
  free(co);
}

extern void aco_call_on_stack(void *sp, void (*fn)(void *), void *arg)
    __asm__("aco_call_on_stack");

#ifdef ACO_ASAN
typedef struct {
  void (*fn)(void *);
  void *arg;
  void *fake;
  const void *co_bottom;
  size_t co_size;
} aco_onstack_t;

/* runs on the main stack: tell ASan where we are, and where we go back */
static void aco_onstack_tramp(void *p) {
  aco_onstack_t *c = p;
  __sanitizer_finish_switch_fiber(c->fake, &c->co_bottom, &c->co_size);
  c->fn(c->arg);
  __sanitizer_start_switch_fiber(&c->fake, c->co_bottom, c->co_size);
}
#endif

void aco_call_on_main_stack(void (*fn)(void *), void *arg) {
  aco_t *co = aco_current();
  if (co == NULL) {
    fn(arg);
    return;
  }
  /* The main coroutine is suspended in acosw; everything below its saved
   * stack pointer is free.  Leave the red zone (and a little more) alone. */
  uintptr_t sp = ((uintptr_t)co->main_co->reg[ACO_REG_IDX_SP] - 512) &
                 ~(uintptr_t)15;
#ifdef ACO_VALGRIND
  /* memcheck does not follow SP across the switch: the red zone below sp
   * (where the call puts its return address) may still be marked
   * unaddressable from deeper frames that returned on this stack */
  if (aco_unlikely(aco_on_valgrind))
    aco_vg_make_undefined((char *)sp - 4096, 4096);
#endif
#ifdef ACO_ASAN
  aco_onstack_t c = {.fn = fn, .arg = arg};
  __sanitizer_start_switch_fiber(&c.fake, aco_gtls_main_stack_bottom,
                                 aco_gtls_main_stack_size);
  aco_call_on_stack((void *)sp, aco_onstack_tramp, &c);
  __sanitizer_finish_switch_fiber(c.fake, NULL, NULL);
#else
  aco_call_on_stack((void *)sp, fn, arg);
#endif
}

size_t aco_resume_copy_cost(const aco_t *co, size_t *copy_out) {
  aco_assertptr(co);
  size_t in = 0, out = 0;
  if (co->main_co != NULL && co->share_stack->owner != co) {
    in = co->save_stack.valid_sz;
    const aco_t *owner = co->share_stack->owner;
    if (owner)
      out = (size_t)((char *)co->share_stack->align_retptr -
                     (char *)owner->reg[ACO_REG_IDX_SP]);
  }
  if (copy_out) *copy_out = out;
  return in;
}
