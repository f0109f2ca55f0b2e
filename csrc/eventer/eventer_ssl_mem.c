/*
 * eventer_ssl_mem.c - a per-thread cache of freed blocks in front of
 * malloc for OpenSSL's allocations (CRYPTO_set_mem_functions).
 *
 * Why: a TLS 1.3 handshake on OpenSSL 3.0 makes about 500 allocations and
 * frees them again within the handshake or at its end, many of one size
 * at a time; glibc's per-thread cache keeps 7 blocks a size, so most of
 * them went through malloc's bins (5% of a handshake's instructions, more
 * of its time: the bins' lists miss the cache).  Here every block gets a
 * 16-byte header naming its size class; a freed block goes on the freeing
 * thread's list for its class (a LIFO: the next allocation of that class
 * gets the block that is hot in the cache), up to a count and a byte
 * budget per thread; past them, and for blocks over the largest class, it
 * goes back to malloc.  A block freed by another thread than the one that
 * made it simply joins that thread's lists (a block is any thread's; the
 * header is all it carries).  A thread's lists go back to malloc when it
 * exits; frees after that go straight to malloc.
 *
 * Installed by eventer_init only when OpenSSL still has its own functions
 * and has not allocated yet (CRYPTO_set_mem_functions fails after the
 * first allocation): a program that set its own functions first keeps
 * them.  OpenSSL 3.0 does not refuse a later CRYPTO_set_mem_functions once
 * functions other than its own are set, so a program must set its own
 * before eventer_init (as OpenSSL asks: before its first allocation).
 *
 * Under AddressSanitizer a cached block is poisoned, and so is a block's
 * room beyond the size asked for: a use after free or an overrun is
 * reported as it would be for malloc's blocks.
 */
#include "eventer_impl.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define EV_SM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EV_SM_ASAN 1
#endif
#endif
#ifdef EV_SM_ASAN
#include <sanitizer/asan_interface.h>
#define EV_SM_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define EV_SM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define EV_SM_POISON(p, n) ((void)(p), (void)(n))
#define EV_SM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Size classes: 16 to 256 bytes in steps of 16 (classes 0-15), then four
 * a power of two (320, 384, 448, 512, 640, ...) up to 32 KiB (class 43):
 * at most a quarter of a block is unused room above 256 bytes. */
#define EV_SM_NSMALL 16
#define EV_SM_NCLASS (EV_SM_NSMALL + 7 * 4)
#define EV_SM_MAX 32768u
#define EV_SM_LARGE 0xffffu /* the header's class of a block over EV_SM_MAX */
#define EV_SM_MAGIC 0x5e55u /* the header's mark: a block of ours */
/* A thread keeps at most EV_SM_CLASS_BYTES of one class (at least
 * EV_SM_CLASS_MIN blocks, at most EV_SM_CLASS_MAX) and EV_SM_THREAD_BYTES
 * in all. */
#define EV_SM_CLASS_BYTES (64u << 10)
#define EV_SM_CLASS_MIN 4u
#define EV_SM_CLASS_MAX 256u
#define EV_SM_THREAD_BYTES (512u << 10)

/* 16 bytes: malloc's alignment is kept for the block after it. */
typedef struct ev_sm_hdr {
  uint16_t cls;   /* size class, or EV_SM_LARGE */
  uint16_t magic; /* EV_SM_MAGIC */
  uint32_t pad;
  struct ev_sm_hdr *next; /* the next cached block (while cached) */
} ev_sm_hdr_t;
_Static_assert(sizeof(ev_sm_hdr_t) == 16, "the header keeps 16-byte alignment");

enum { EV_SM_FRESH = 0, EV_SM_LIVE, EV_SM_DEAD };

typedef struct {
  ev_sm_hdr_t *head[EV_SM_NCLASS];
  uint16_t count[EV_SM_NCLASS];
  size_t bytes; /* cached, all classes (class sizes) */
  int state;    /* EV_SM_FRESH: no exit hook yet; _LIVE; _DEAD: exited */
} ev_sm_cache_t;

static __thread ev_sm_cache_t ev_sm_tc;
static pthread_key_t ev_sm_key;
static int ev_sm_installed;

/* each class's block size and how many a thread keeps (ev_sm_install_once) */
static uint32_t ev_sm_size[EV_SM_NCLASS];
static uint16_t ev_sm_cap[EV_SM_NCLASS];

static inline size_t ev_sm_class_size(unsigned c) { return ev_sm_size[c]; }

/* n in 1..EV_SM_MAX */
static inline unsigned ev_sm_class_of(size_t n) {
  if (n <= 256) return (unsigned)((n + 15) >> 4) - 1;
  unsigned p = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1));
  return EV_SM_NSMALL + (p - 8) * 4 + (unsigned)((n - 1) >> (p - 2)) - 4;
}

static void ev_sm_tables(void) {
  for (unsigned c = 0; c < EV_SM_NCLASS; c++) {
    unsigned p = 8 + (c - EV_SM_NSMALL) / 4, m = (c - EV_SM_NSMALL) % 4 + 5;
    size_t sz = c < EV_SM_NSMALL ? (size_t)(c + 1) * 16 : (size_t)m << (p - 2);
    size_t k = EV_SM_CLASS_BYTES / sz;
    if (k < EV_SM_CLASS_MIN) k = EV_SM_CLASS_MIN;
    if (k > EV_SM_CLASS_MAX) k = EV_SM_CLASS_MAX;
    ev_sm_size[c] = (uint32_t)sz;
    ev_sm_cap[c] = (uint16_t)k;
  }
  EV_ASSERT(ev_sm_size[EV_SM_NCLASS - 1] == EV_SM_MAX, "the last class is EV_SM_MAX");
}

static void ev_sm_drain(ev_sm_cache_t *tc) {
  for (unsigned c = 0; c < EV_SM_NCLASS; c++) {
    ev_sm_hdr_t *h = tc->head[c];
    while (h) {
      EV_SM_UNPOISON(h, sizeof(*h) + ev_sm_class_size(c));
      ev_sm_hdr_t *next = h->next;
      free(h);
      h = next;
    }
    tc->head[c] = NULL;
    tc->count[c] = 0;
  }
  tc->bytes = 0;
}

static void ev_sm_thread_exit(void *arg) {
  ev_sm_cache_t *tc = arg;
  /* frees from later exit hooks (OpenSSL's own) go straight to malloc */
  tc->state = EV_SM_DEAD;
  ev_sm_drain(tc);
}

/* At exit, after OpenSSL's own clean-up (registered later, so run
 * earlier), the exiting thread's cache goes back to malloc too: exit()
 * runs no thread-exit hooks, and a cache left in a thread's storage reads
 * as leaked blocks to a leak checker that does not scan it. */
static void ev_sm_process_exit(void) { ev_sm_thread_exit(&ev_sm_tc); }

static void *ev_sm_new(size_t n, unsigned c) {
  ev_sm_hdr_t *h = malloc(ev_sm_class_size(c) + sizeof(*h));
  if (!h) return NULL;
  h->cls = (uint16_t)c;
  h->magic = EV_SM_MAGIC;
  EV_SM_POISON((char *)(h + 1) + n, ev_sm_class_size(c) - n);
  return h + 1;
}

void *ev_ssl_mem_malloc(size_t n, const char *file, int line) {
  (void)file;
  (void)line;
  if (n == 0) return NULL; /* as OpenSSL's own CRYPTO_malloc */
  if (n > EV_SM_MAX) {
    if (n > SIZE_MAX - sizeof(ev_sm_hdr_t)) return NULL;
    ev_sm_hdr_t *h = malloc(n + sizeof(*h));
    if (!h) return NULL;
    h->cls = EV_SM_LARGE;
    h->magic = EV_SM_MAGIC;
    return h + 1;
  }
  unsigned c = ev_sm_class_of(n);
  ev_sm_cache_t *tc = &ev_sm_tc;
  ev_sm_hdr_t *h = tc->head[c];
  if (!h) return ev_sm_new(n, c);
  EV_SM_UNPOISON(h, sizeof(*h));
  tc->head[c] = h->next;
  tc->count[c]--;
  tc->bytes -= ev_sm_class_size(c);
  EV_SM_UNPOISON(h + 1, n);
  return h + 1;
}

static inline ev_sm_hdr_t *ev_sm_hdr(void *p) {
  ev_sm_hdr_t *h = (ev_sm_hdr_t *)p - 1;
  EV_ASSERT(h->magic == EV_SM_MAGIC && (h->cls < EV_SM_NCLASS || h->cls == EV_SM_LARGE),
            "a block freed through OpenSSL was allocated through OpenSSL"
            " (ev_ssl_mem)");
  return h;
}

void ev_ssl_mem_free(void *p, const char *file, int line) {
  (void)file;
  (void)line;
  if (!p) return;
  ev_sm_hdr_t *h = ev_sm_hdr(p);
  unsigned c = h->cls;
  if (c == EV_SM_LARGE) {
    free(h);
    return;
  }
  size_t sz = ev_sm_class_size(c);
  ev_sm_cache_t *tc = &ev_sm_tc;
  if (tc->state != EV_SM_LIVE) {
    /* the exit hook is set at a thread's first cached block */
    if (tc->state == EV_SM_DEAD || pthread_setspecific(ev_sm_key, tc) != 0) {
      EV_SM_UNPOISON(p, sz);
      free(h);
      return;
    }
    tc->state = EV_SM_LIVE;
  }
  if (tc->count[c] >= ev_sm_cap[c] || tc->bytes + sz > EV_SM_THREAD_BYTES) {
    EV_SM_UNPOISON(p, sz);
    free(h);
    return;
  }
  h->next = tc->head[c];
  tc->head[c] = h;
  tc->count[c]++;
  tc->bytes += sz;
  EV_SM_POISON(h, sizeof(*h) + sz);
}

void *ev_ssl_mem_realloc(void *p, size_t n, const char *file, int line) {
  if (!p) return ev_ssl_mem_malloc(n, file, line);
  if (n == 0) {
    ev_ssl_mem_free(p, file, line);
    return NULL;
  }
  ev_sm_hdr_t *h = ev_sm_hdr(p);
  if (h->cls == EV_SM_LARGE) {
    if (n > EV_SM_MAX) {
      if (n > SIZE_MAX - sizeof(*h)) return NULL;
      ev_sm_hdr_t *nh = realloc(h, n + sizeof(*h));
      return nh ? nh + 1 : NULL;
    }
    /* smaller than the block: n bytes move */
    void *q = ev_ssl_mem_malloc(n, file, line);
    if (!q) return NULL;
    memcpy(q, p, n);
    free(h);
    return q;
  }
  size_t sz = ev_sm_class_size(h->cls);
  if (n <= sz) { /* fits: the block stays (its room beyond n is poisoned) */
    EV_SM_UNPOISON(p, n);
    EV_SM_POISON((char *)p + n, sz - n);
    return p;
  }
  void *q = ev_ssl_mem_malloc(n, file, line);
  if (!q) return NULL;
  EV_SM_UNPOISON(p, sz); /* the old block's room goes along */
  memcpy(q, p, sz);
  ev_ssl_mem_free(p, file, line);
  return q;
}

size_t ev_ssl_mem_cached(void) { return ev_sm_tc.bytes; }

void ev_ssl_mem_thread_drain(void) { ev_sm_drain(&ev_sm_tc); }

int ev_ssl_mem_active(void) { return __atomic_load_n(&ev_sm_installed, __ATOMIC_ACQUIRE); }

static void ev_sm_install_once(void) {
  CRYPTO_malloc_fn m;
  CRYPTO_realloc_fn r;
  CRYPTO_free_fn f;
  const char *off = getenv("EVENTER_SSL_MEM_CACHE");
  if (off && !strcmp(off, "0")) return;
  CRYPTO_get_mem_functions(&m, &r, &f);
  /* a program's own functions stay */
  if (m != CRYPTO_malloc || r != CRYPTO_realloc || f != CRYPTO_free) return;
  ev_sm_tables();
  if (pthread_key_create(&ev_sm_key, ev_sm_thread_exit) != 0) return;
  if (atexit(ev_sm_process_exit) != 0) return;
  /* fails once OpenSSL has allocated: then malloc serves it, as before */
  if (CRYPTO_set_mem_functions(ev_ssl_mem_malloc, ev_ssl_mem_realloc, ev_ssl_mem_free))
    __atomic_store_n(&ev_sm_installed, 1, __ATOMIC_RELEASE);
}

void ev_ssl_mem_install(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, ev_sm_install_once);
}
