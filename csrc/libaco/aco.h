/*
 * aco.h - shared-stack ("copy stack") coroutines with the libaco 1.2 API.
 *
 * A program written against libaco 1.2.x compiles against this header and
 * behaves the same.  This implementation is our own; libaco is the
 * reference for names and semantics only.
 *
 * The model
 * ---------
 * Each OS thread calls aco_thread_init() once and creates a main coroutine
 * (aco_create(NULL, NULL, 0, NULL, NULL)), which stands for the thread's
 * own stack.  Non-main coroutines run on a *share stack*: one large mmap'd
 * stack that many coroutines take turns on.  Each coroutine also has a
 * small *save stack* (heap) that holds its live stack bytes while another
 * coroutine owns the share stack.
 *
 * The shared-stack contract (what makes this fast, and what you must obey)
 * ------------------------------------------------------------------------
 *  - aco_resume(co) may only be called from the main coroutine.  A
 *    coroutine returns control only with aco_yield()/aco_yield1() (back to
 *    main) or aco_exit() (ends it).
 *  - A yield never copies.  The share stack is copied out only when a
 *    *different* coroutine of the same share stack is resumed; only the
 *    live bytes (saved SP up to the top) are copied, into the owner's save
 *    stack, and copied back to the very same addresses when that owner is
 *    resumed again.  So a pointer into a coroutine's stack is valid only
 *    while that coroutine runs: never hand the address of a stack variable
 *    to another coroutine, another thread, or anything that outlives the
 *    next yield.  Use the heap (or coroutine-local storage) for that.
 *  - The save stack grows on demand; save_stack.max_cpsz records the most
 *    bytes ever copied so the size passed to aco_create can be right-sized.
 *  - aco_exit() and aco_destroy() drop ownership without saving anything.
 *  - A coroutine function must never return: it must end with aco_exit().
 *    If it returns, the thread's "last word" function (aco_thread_init's
 *    argument) is called, then the process aborts with a message.
 *  - Coroutines never move between threads.
 *
 * Floating-point state
 * --------------------
 * The floating-point *control* state is per coroutine: on x86-64 the
 * control bits of MXCSR (rounding, exception masks, flush-to-zero,
 * denormals-are-zero) and the x87 control word (precision, rounding,
 * masks); on aarch64 FPCR.  A coroutine starts with the state its thread
 * had at aco_thread_init(); what it changes (fesetround, feenableexcept,
 * FTZ/DAZ, _FPU_SETCW) it keeps across its yields, and neither the main
 * coroutine nor any other coroutine sees it.  A switch loads the control
 * state of the context it enters only when it differs from the one it
 * leaves, so the usual switch, between contexts with equal control
 * state, never writes MXCSR/FPCR (a write is slow on several cores).
 *
 * The sticky exception *status* flags are per thread, not per coroutine:
 * MXCSR bits 0-5 (invalid, denormal, divide-by-zero, overflow, underflow,
 * inexact), the x87 status word and aarch64's FPSR are never saved or
 * restored by a switch.  A flag raised in one coroutine stays raised
 * after it yields, in main and in whatever runs next, until code on this
 * thread clears it (feclearexcept); a flag cleared anywhere is cleared
 * for everyone.  To test for exceptions raised by one piece of code, clear
 * the flags, run it and test them before the next yield or resume.
 * (libaco 1.2 restores the whole saved MXCSR, flags included, at every
 * switch; the flags then depend on which contexts switched in between.)
 *
 * Defining ACO_CONFIG_SHARE_FPU_MXCSR_ENV when compiling aco.c and the
 * acosw_<arch>.S files makes the control state shared by all coroutines
 * of a thread (as in libaco); the switch then never reads or writes it.
 * Defining it only where aco.h is included changes nothing (aco_t has the
 * same layout either way).
 *
 * Beyond libaco
 * -------------
 *  - aarch64 support.
 *  - The share stack's guard page is PROT_NONE and an overflow into it
 *    aborts with a message naming the coroutine (aco_set_name()) rather
 *    than corrupting memory.  A single frame larger than a page can jump
 *    over the guard page: compile coroutine code with
 *    -fstack-clash-protection (as this library is) so every page of a big
 *    frame is probed in order and the guard page is always hit; on
 *    aarch64 also with --param stack-clash-protection-guard-size=12 (gcc
 *    assumes a 64 KiB guard there otherwise).  The SIGSEGV handler chains
 *    to whatever handler was installed before it (the Go runtime's
 *    included) for every fault that is not a guard-page hit, and runs on
 *    the thread's alternate signal stack (aco_thread_init installs one if
 *    the thread has none).
 *  - AddressSanitizer fiber annotations and valgrind stack registration.
 *  - Coroutine-local storage: ACO_CLS_SLOTS pointer slots per coroutine,
 *    handed out by aco_cls_key_create(); they cost one pointer in aco_t
 *    until first set.
 *  - aco_current(): the running non-main coroutine, or NULL.
 *  - The per-coroutine FP control state costs a compare, not a load,
 *    while it is equal between the contexts that switch (above).
 *  - acosw also sets aco_gtls_co, so aco_resume ends with a jump into
 *    acosw and the coroutine's yield returns straight to aco_resume's
 *    caller: a loop of resumes mispredicts no return.
 *
 * Sanitizers and valgrind need no macro: a library built with
 * -fsanitize=address or =thread annotates every switch itself (so link
 * the ASan build of the library to ASan-instrumented code), and valgrind
 * is detected at run time.  ACO_USE_ASAN and ACO_USE_VALGRIND, libaco's
 * switches for them, are accepted: the first defines aco_attr_no_asan as
 * libaco does, the second includes <valgrind/valgrind.h> as libaco does.
 *
 * Errors
 * ------
 * Misuse that would corrupt memory (resume of an ended coroutine, resume
 * from inside a coroutine, aco_create before aco_thread_init, ...) aborts
 * with a message that says which rule was broken; these checks are always
 * on, not only in debug builds.
 */
#ifndef ACO_H
#define ACO_H

/* what libaco's aco.h brings in: its programs rely on it (memset,
 * clock_gettime, CLOCK_MONOTONIC, sysconf, mmap, INT_MAX, ...) */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(ACO_USE_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#include "acosw_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ACO_VERSION_MAJOR 1
#define ACO_VERSION_MINOR 2
#define ACO_VERSION_PATCH 4

/* Indexes into aco_t.reg[] (libaco's names; the layout is ours, see
 * acosw_layout.h): the saved SP, the resume pc and the frame pointer. */
#define ACO_REG_IDX_RETADDR ACO_REG_IDX_PC
#if defined(__x86_64__)
#define ACO_REG_IDX_BP (ACO_OFF_RBP / 8)
#else
#define ACO_REG_IDX_BP (ACO_OFF_X29 / 8)
#endif

/* libaco marks aco_resume with this when ACO_USE_ASAN is defined; code
 * that uses it for its own functions keeps compiling. */
#if defined(aco_attr_no_asan)
#error "aco_attr_no_asan already defined"
#endif
#if defined(ACO_USE_ASAN) && defined(__SANITIZE_ADDRESS__)
#define aco_attr_no_asan __attribute__((__no_sanitize_address__))
#elif defined(ACO_USE_ASAN) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#define aco_attr_no_asan __attribute__((__no_sanitize_address__))
#endif
#endif
#ifndef aco_attr_no_asan
#define aco_attr_no_asan
#endif

/* coroutine-local storage slots per coroutine */
#define ACO_CLS_SLOTS 4

#define aco_likely(x) (__builtin_expect(!!(x), 1))
#define aco_unlikely(x) (__builtin_expect(!!(x), 0))

/* Prints a message and aborts (used by the aco_assert family). */
__attribute__((noreturn, format(printf, 1, 2))) void aco_abortf(
    const char *fmt, ...);

/* Always-on assertions (libaco's names).  They abort with the expression,
 * file and line; they are not compiled out by NDEBUG. */
#define aco_assert(EX)                                                    \
  ((aco_likely(EX)) ? (void)0                                             \
                    : aco_abortf("aco_assert(%s) failed at %s:%d", #EX,   \
                                 __FILE__, __LINE__))
#define aco_assertptr(ptr)                                                \
  ((aco_likely((ptr) != NULL))                                            \
       ? (void)0                                                          \
       : aco_abortf("aco_assertptr(%s) failed: NULL at %s:%d", #ptr,      \
                    __FILE__, __LINE__))
#define aco_assertalloc_bool(b)                                           \
  ((aco_likely(b)) ? (void)0                                              \
                   : aco_abortf("aco: out of memory at %s:%d", __FILE__,  \
                                __LINE__))
#define aco_assertalloc_ptr(ptr) aco_assertalloc_bool((ptr) != NULL)

/* size_t arithmetic that cannot wrap */
#define aco_size_t_safe_add_assert(a, b) aco_assert((a) + (b) >= (a))

typedef struct aco_s aco_t;
typedef void (*aco_cofuncp_t)(void);

typedef struct {
  void *ptr;         /* heap buffer holding the live bytes while suspended */
  size_t sz;         /* its capacity */
  size_t valid_sz;   /* bytes it holds now */
  size_t max_cpsz;   /* most bytes ever copied out (right-size hint) */
  size_t ct_save;    /* times copied out of the share stack */
  size_t ct_restore; /* times copied back in */
} aco_save_stack_t;

typedef struct {
  void *ptr;           /* lowest usable byte (just above the guard page) */
  size_t sz;           /* usable bytes */
  void *align_highptr; /* top of the stack, 16-byte aligned */
  void *align_retptr;  /* live stacks are [saved SP, align_retptr) */
  size_t align_validsz; /* bytes from the SP of the owner when it last
                         * took the stack up to align_highptr (its
                         * restored bytes and the return slot), 0 when
                         * nobody owns it */
  size_t align_limit;  /* most live bytes a coroutine can have */
  aco_t *owner;        /* coroutine whose bytes are on the stack, or NULL */
  char guard_page_enabled;
  void *real_ptr;      /* the mapping (guard page first) */
  size_t real_sz;      /* its length */
} aco_share_stack_t;

struct aco_s {
  /* Saved machine state; must stay first (acosw_layout.h). */
  void *reg[ACO_REG_NUM];
#if defined(__x86_64__)
  /* private: MXCSR and x87 control word, saved by acosw; is_end and the
   * flags share their 8-byte word, which keeps aco_t at 160 bytes */
  uint32_t fp_mxcsr_;
  uint16_t fp_fpucw_;
  char is_end;      /* set by aco_exit; the coroutine can't be resumed */
  unsigned char aco_flags_; /* private */
#endif
  aco_t *main_co;   /* NULL for a main coroutine */
  void *arg;
#if !defined(__x86_64__)
  char is_end;      /* set by aco_exit; the coroutine can't be resumed */
  unsigned char aco_flags_; /* private */
#endif
  aco_cofuncp_t fp;
  aco_save_stack_t save_stack;
  aco_share_stack_t *share_stack;
  void **cls; /* coroutine-local storage: ACO_CLS_SLOTS slots, allocated by
               * the first aco_cls_set (most coroutines never use it) */
#if defined(__SANITIZE_THREAD__)
  void *tsan_fiber_; /* private: ThreadSanitizer's context for this co */
#endif
};

/* --- thread and stacks --------------------------------------------------- */

/* Prepares the calling thread: records its floating-point control state
 * (the initial state of every coroutine it creates), its last-word
 * function (called when a coroutine function returns; NULL for the
 * default message), and makes sure it has an alternate signal stack so a
 * share-stack overflow can be reported.  Call once per thread before
 * aco_create. */
void aco_thread_init(aco_cofuncp_t last_word_co_fp);

/* Checks at run time what this build assumes (pointer and integer
 * sizes, aco_t's layout as the switch sees it, the page size); aborts
 * with a message naming a failed check. */
void aco_runtime_test(void);

/* Stores the thread's current floating-point control state at p, as
 * libaco does: x86-64, the x87 control word (2 bytes) at p and MXCSR (4
 * bytes) at p + 4; aarch64, FPCR (8 bytes) at p. */
void aco_save_fpucw_mxcsr(void *p) __asm__("aco_save_fpucw_mxcsr");

/* A share stack of sz bytes (0: 2 MiB; rounded up to whole pages) with a
 * PROT_NONE guard page below it. */
aco_share_stack_t *aco_share_stack_new(size_t sz);
/* As aco_share_stack_new, guard page optional. */
aco_share_stack_t *aco_share_stack_new2(size_t sz, char guard_page_enabled);
/* Frees the stack.  No coroutine may still use it. */
void aco_share_stack_destroy(aco_share_stack_t *sstk);

/* --- coroutines ---------------------------------------------------------- */

/* aco_create(NULL, NULL, 0, NULL, NULL) creates the thread's main
 * coroutine.  Otherwise creates a coroutine that will run fp(void) on
 * share_stack with arg, and a save stack of save_stack_sz bytes (0: none
 * until the first copy-out, which allocates exactly what it copies; it
 * grows on demand).  It does not run until aco_resume. */
aco_t *aco_create(aco_t *main_co, aco_share_stack_t *share_stack,
                  size_t save_stack_sz, aco_cofuncp_t fp, void *arg);

/* As aco_create for a non-main coroutine, plus ext_sz zeroed bytes at
 * aco_ext(co) in the same allocation (8-byte aligned).  For layers built
 * on aco (the eventer) that keep per-coroutine state without a second
 * allocation; the bytes live until aco_destroy. */
aco_t *aco_create_ext(aco_t *main_co, aco_share_stack_t *share_stack,
                      size_t save_stack_sz, aco_cofuncp_t fp, void *arg,
                      size_t ext_sz);
static inline void *aco_ext(aco_t *co) { return (void *)(co + 1); }

/* Beyond libaco: makes co, which has ended (aco_exit), a new coroutine
 * that will run fp(void) with arg on the same share stack, reusing its
 * allocation and save stack (as big as it grew); its name and
 * coroutine-local storage are dropped, its ext bytes are the caller's to
 * reset.  What aco_destroy then aco_create_ext would give, without the
 * free and malloc (a layer that runs a coroutine per request keeps a few
 * ended ones for the next).  Aborts if co has not ended. */
void aco_reset(aco_t *co, aco_cofuncp_t fp, void *arg);

/* Runs co until it yields or exits.  Main coroutine only. */
void aco_resume(aco_t *resume_co);

/* private: aco_resume without its misuse checks, for a layer that has
 * made them already (co is a non-main coroutine that has not ended, and
 * the caller runs on co's main coroutine); a misuse is undefined. */
void aco_resume_checked_(aco_t *co);

/* Frees co (main or not).  A suspended coroutine is dropped without
 * saving; the caller must not be running on co. */
void aco_destroy(aco_t *co);

/* The running coroutine of this thread: a non-main coroutine while one
 * runs, the main coroutine (or NULL before the first resume) otherwise.
 * acosw sets it to the context it enters.  The switch reaches it with the
 * initial-exec TLS model, so a shared library built from these sources
 * needs a few bytes of static TLS (glibc keeps some for dlopen). */
extern __thread aco_t *aco_gtls_co;

#define aco_get_co() (aco_gtls_co)
#define aco_co() (aco_gtls_co)
#define aco_get_arg() (aco_gtls_co->arg)
#define aco_is_main_co(co) ((co)->main_co == NULL)

/* The running non-main coroutine, or NULL on the main coroutine. */
static inline aco_t *aco_current(void) {
  aco_t *co = aco_gtls_co;
  return (co != NULL && co->main_co != NULL) ? co : NULL;
}

/* Switch from `from` to `to` (assembly, acosw_<arch>.S).  Use
 * aco_resume/aco_yield; exported for libaco compatibility.  The value it
 * returns is unspecified, as in libaco. */
extern void *acosw(aco_t *from_co, aco_t *to_co) __asm__("acosw");

/* Where a coroutine function that returns lands (assembly), and the C
 * function it calls: the thread's last word, then abort. */
extern void aco_funcp_protector_asm(void) __asm__("aco_funcp_protector_asm");
void aco_funcp_protector(void) __asm__("aco_funcp_protector");

/* private: aborts with a message naming the misused yield's file and
 * line.  Constants only: an argument the macro had computed would have to
 * survive the call a sanitizer puts before any call that does not return,
 * and would take a stack slot in the caller's frame. */
__attribute__((noreturn, cold)) void aco_yield_misuse_(const char *file,
                                                       int line);

/* Yields yield_co (the running coroutine) back to its main coroutine.
 * Never copies stack bytes.  A macro, as in libaco: the yield is a call
 * to acosw from the coroutine's own frame, so at every optimisation level
 * and under sanitizers the live stack a later copy saves is exactly the
 * coroutine's frames, nothing of ours (libaco's copy sizes).  yield_co is
 * evaluated more than once, as in libaco; misuse (NULL, not the running
 * coroutine, a main coroutine) aborts with a message. */
#define aco_yield1(yield_co)                                              \
  do {                                                                    \
    if (aco_unlikely((yield_co) == NULL || (yield_co) != aco_gtls_co ||   \
                     (yield_co)->main_co == NULL))                        \
      aco_yield_misuse_(__FILE__, __LINE__);                              \
    acosw((yield_co), (yield_co)->main_co);                               \
  } while (0)
#define aco_yield() aco_yield1(aco_gtls_co)

/* Ends the coroutine: is_end is set, the share stack is given up without
 * saving, and control returns to main.  Never returns.  A macro, as in
 * libaco, around a function that is not declared noreturn: a sanitizer
 * puts a call before any call that does not return, and co would have to
 * survive it in a stack slot of the caller's frame, a frame that is live
 * (and copied) at every earlier yield. */
void aco_exit1_(aco_t *co);
#define aco_exit1(co)                                                     \
  do {                                                                    \
    aco_exit1_(co);                                                       \
    __builtin_unreachable();                                              \
  } while (0)
#define aco_exit() aco_exit1(aco_gtls_co)

/* --- beyond libaco ------------------------------------------------------- */

/* A name for diagnostics (stack overflow, misuse).  The string is not
 * copied and must outlive the coroutine.  NULL clears it. */
void aco_set_name(aco_t *co, const char *name);
const char *aco_get_name(const aco_t *co);

/* Allocates a coroutine-local storage slot number for all coroutines.
 * Returns 0..ACO_CLS_SLOTS-1, or -1 with errno EAGAIN when all are taken. */
int aco_cls_key_create(void);

static inline void *aco_cls_get(const aco_t *co, int key) {
  aco_assert(co != NULL && key >= 0 && key < ACO_CLS_SLOTS);
  return co->cls ? co->cls[key] : NULL;
}
/* Sets slot `key` of co (allocating co's slots on first use). */
void aco_cls_set(aco_t *co, int key, void *value);

/* Calls fn(arg) on the thread's own stack (below the main coroutine's
 * saved stack pointer) when called from inside a coroutine; directly
 * otherwise.  For code that must not run on a share stack: a foreign
 * runtime's callback (Go's cgo callbacks check that they run on the
 * thread's stack), or anything that needs more stack than the share
 * stack has.  fn must not yield or resume coroutines. */
void aco_call_on_main_stack(void (*fn)(void *), void *arg);

/* Bytes that resuming co would copy back in now (0 when it already owns
 * its share stack), and bytes the current owner would have to copy out. */
size_t aco_resume_copy_cost(const aco_t *co, size_t *copy_out);


#ifdef __cplusplus
}
#endif

#endif /* ACO_H */
