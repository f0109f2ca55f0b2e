/* http_parse.c - see http_parse.h */
#include "http_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define EV_HTTP_X86 1
#endif

/* ---- byte classes ---------------------------------------------------------- */

/* tchar (RFC 9110 5.6.2): "!#$%&'*+-.^_`|~" DIGIT ALPHA */
const uint8_t ev_http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* Host header bytes net/http's server accepts (httpguts.ValidHostHeader):
 * alphanumerics, unreserved, sub-delims, ':', '[', ']' and '%'. */
static const uint8_t ev_hostch[256] = {
    ['!'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1,
    [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, ['-'] = 1, ['.'] = 1,
    [':'] = 1, [';'] = 1, ['='] = 1, ['['] = 1, [']'] = 1, ['_'] = 1,
    ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static inline int ev_hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* field-value bytes: HTAB, SP..'~', obs-text */
static inline int ev_valuech(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}
/* request-target bytes: VCHAR and obs-text (no SP, no controls) */
static inline int ev_targetch(unsigned char c) { return c > 0x20 && c != 0x7f; }

/* ---- the scanners ------------------------------------------------------------
 * Each returns the index of the first byte of p[0..n) outside its class, or
 * n.  The SIMD forms look at 16 or 32 bytes at a time and never read past
 * p + n (the tail is scalar). */

typedef size_t (*ev_scan_fn)(const char *p, size_t n);

static size_t scan_value_scalar(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0;
  while (i < n && ev_valuech(s[i])) i++;
  return i;
}

static size_t scan_target_scalar(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0;
  while (i < n && ev_targetch(s[i])) i++;
  return i;
}

#ifdef EV_HTTP_X86
/* The SIMD scanners look at whole vectors inside p[0..n).  A tail shorter
 * than a vector is looked at with one more vector that ends at p + n and
 * so overlaps bytes already found good (any bad byte it finds is at or
 * after the tail's start); only n below 16 is left to the scalar loop. */

/* pcmpestri in ranges mode with negative polarity: the index of the first
 * byte that lies in none of the (lo, hi) pairs. */
#define EV_PCMP_MODE \
  (_SIDD_UBYTE_OPS | _SIDD_CMP_RANGES | _SIDD_NEGATIVE_POLARITY | \
   _SIDD_LEAST_SIGNIFICANT)

__attribute__((target("sse4.2"))) static size_t
scan_value_sse42(const char *p, size_t n) {
  static const char ranges[16] = {'\t', '\t', 0x20, 0x7e, (char)0x80,
                                  (char)0xff};
  if (n < 16) return scan_value_scalar(p, n);
  const __m128i r = _mm_loadu_si128((const __m128i *)ranges);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i d = _mm_loadu_si128((const __m128i *)(p + i));
    int idx = _mm_cmpestri(r, 6, d, 16, EV_PCMP_MODE);
    if (idx != 16) return i + (size_t)idx;
  }
  if (i == n) return n;
  __m128i d = _mm_loadu_si128((const __m128i *)(p + n - 16));
  int idx = _mm_cmpestri(r, 6, d, 16, EV_PCMP_MODE);
  return idx != 16 ? n - 16 + (size_t)idx : n;
}

__attribute__((target("sse4.2"))) static size_t
scan_target_sse42(const char *p, size_t n) {
  static const char ranges[16] = {0x21, 0x7e, (char)0x80, (char)0xff};
  if (n < 16) return scan_target_scalar(p, n);
  const __m128i r = _mm_loadu_si128((const __m128i *)ranges);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i d = _mm_loadu_si128((const __m128i *)(p + i));
    int idx = _mm_cmpestri(r, 4, d, 16, EV_PCMP_MODE);
    if (idx != 16) return i + (size_t)idx;
  }
  if (i == n) return n;
  __m128i d = _mm_loadu_si128((const __m128i *)(p + n - 16));
  int idx = _mm_cmpestri(r, 4, d, 16, EV_PCMP_MODE);
  return idx != 16 ? n - 16 + (size_t)idx : n;
}

/* AVX2 has no string compare: classify bytes with signed compares
 * (obs-text, 0x80..0xff, is negative and always allowed).  32 bytes at a
 * time, a 16-byte step (VEX-encoded, so no AVX-SSE transition) for what
 * is left, then the overlapping vector. */
__attribute__((target("avx2"))) static inline uint32_t
value_bad16(__m128i d) {
  const __m128i sp = _mm_set1_epi8(0x20), neg1 = _mm_set1_epi8(-1);
  const __m128i tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
  __m128i ctl = _mm_and_si128(_mm_cmpgt_epi8(sp, d), _mm_cmpgt_epi8(d, neg1));
  __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(d, tab), ctl),
                             _mm_cmpeq_epi8(d, del));
  return (uint32_t)_mm_movemask_epi8(bad);
}

__attribute__((target("avx2"))) static inline uint32_t
target_bad16(__m128i d) {
  const __m128i excl = _mm_set1_epi8(0x21), neg1 = _mm_set1_epi8(-1);
  const __m128i del = _mm_set1_epi8(0x7f);
  __m128i low = _mm_and_si128(_mm_cmpgt_epi8(excl, d), _mm_cmpgt_epi8(d, neg1));
  __m128i bad = _mm_or_si128(low, _mm_cmpeq_epi8(d, del));
  return (uint32_t)_mm_movemask_epi8(bad);
}

__attribute__((target("avx2"))) static size_t
scan_value_avx2(const char *p, size_t n) {
  if (n < 16) return scan_value_scalar(p, n);
  size_t i = 0;
  if (n >= 32) {
    const __m256i sp = _mm256_set1_epi8(0x20), neg1 = _mm256_set1_epi8(-1);
    const __m256i tab = _mm256_set1_epi8('\t'), del = _mm256_set1_epi8(0x7f);
    for (; i + 32 <= n; i += 32) {
      __m256i d = _mm256_loadu_si256((const __m256i *)(p + i));
      __m256i ctl = _mm256_and_si256(_mm256_cmpgt_epi8(sp, d),
                                     _mm256_cmpgt_epi8(d, neg1));
      __m256i bad = _mm256_or_si256(
          _mm256_andnot_si256(_mm256_cmpeq_epi8(d, tab), ctl),
          _mm256_cmpeq_epi8(d, del));
      uint32_t m = (uint32_t)_mm256_movemask_epi8(bad);
      if (m) return i + (size_t)__builtin_ctz(m);
    }
  }
  if (i + 16 <= n) {
    uint32_t m = value_bad16(_mm_loadu_si128((const __m128i *)(p + i)));
    if (m) return i + (size_t)__builtin_ctz(m);
    i += 16;
  }
  if (i == n) return n;
  uint32_t m = value_bad16(_mm_loadu_si128((const __m128i *)(p + n - 16)));
  return m ? n - 16 + (size_t)__builtin_ctz(m) : n;
}

__attribute__((target("avx2"))) static size_t
scan_target_avx2(const char *p, size_t n) {
  if (n < 16) return scan_target_scalar(p, n);
  size_t i = 0;
  if (n >= 32) {
    const __m256i excl = _mm256_set1_epi8(0x21), neg1 = _mm256_set1_epi8(-1);
    const __m256i del = _mm256_set1_epi8(0x7f);
    for (; i + 32 <= n; i += 32) {
      __m256i d = _mm256_loadu_si256((const __m256i *)(p + i));
      __m256i low = _mm256_and_si256(_mm256_cmpgt_epi8(excl, d),
                                     _mm256_cmpgt_epi8(d, neg1));
      __m256i bad = _mm256_or_si256(low, _mm256_cmpeq_epi8(d, del));
      uint32_t m = (uint32_t)_mm256_movemask_epi8(bad);
      if (m) return i + (size_t)__builtin_ctz(m);
    }
  }
  if (i + 16 <= n) {
    uint32_t m = target_bad16(_mm_loadu_si128((const __m128i *)(p + i)));
    if (m) return i + (size_t)__builtin_ctz(m);
    i += 16;
  }
  if (i == n) return n;
  uint32_t m = target_bad16(_mm_loadu_si128((const __m128i *)(p + n - 16)));
  return m ? n - 16 + (size_t)__builtin_ctz(m) : n;
}
#endif

#ifdef EV_HTTP_X86
/* The first 16 bytes at p (readable), inline with SSE2 (what every
 * x86-64 has): a mask of the bytes outside the class.  Most targets and
 * values are shorter than 16 bytes: this finds their end without a call
 * through the scanner table; longer ones go on to the scanner. */
static inline uint32_t ev_value_bad16_sse2(const char *p) {
  const __m128i d = _mm_loadu_si128((const __m128i *)p);
  __m128i ctl = _mm_and_si128(_mm_cmpgt_epi8(_mm_set1_epi8(0x20), d),
                              _mm_cmpgt_epi8(d, _mm_set1_epi8(-1)));
  __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(d, _mm_set1_epi8('\t')), ctl),
                             _mm_cmpeq_epi8(d, _mm_set1_epi8(0x7f)));
  return (uint32_t)_mm_movemask_epi8(bad);
}
static inline uint32_t ev_target_bad16_sse2(const char *p) {
  const __m128i d = _mm_loadu_si128((const __m128i *)p);
  __m128i low = _mm_and_si128(_mm_cmpgt_epi8(_mm_set1_epi8(0x21), d),
                              _mm_cmpgt_epi8(d, _mm_set1_epi8(-1)));
  __m128i bad = _mm_or_si128(low, _mm_cmpeq_epi8(d, _mm_set1_epi8(0x7f)));
  return (uint32_t)_mm_movemask_epi8(bad);
}
#endif

/* ---- dispatch ------------------------------------------------------------------ */

static const struct {
  const char *name;
  ev_scan_fn value, target;
} ev_impls[] = {
    {"scalar", scan_value_scalar, scan_target_scalar},
#ifdef EV_HTTP_X86
    {"sse42", scan_value_sse42, scan_target_sse42},
    {"avx2", scan_value_avx2, scan_target_avx2},
#endif
};
#define EV_NIMPLS ((int)(sizeof(ev_impls) / sizeof(ev_impls[0])))

/* -1 until first use; then an index into ev_impls.  Relaxed atomics: the
 * value only ever goes from -1 to a valid index (or is switched by tests
 * while no other thread parses). */
static int ev_impl = -1;

int ev_http_simd_available(int impl) {
  if (impl < 0 || impl >= EV_NIMPLS) return 0;
#ifdef EV_HTTP_X86
  __builtin_cpu_init();
  if (impl == EV_HTTP_SIMD_SSE42) return __builtin_cpu_supports("sse4.2") != 0;
  if (impl == EV_HTTP_SIMD_AVX2) return __builtin_cpu_supports("avx2") != 0;
#endif
  return 1;
}

const char *ev_http_simd_name(int impl) {
  if (impl < 0 || impl >= EV_NIMPLS) return "none";
  return ev_impls[impl].name;
}

static __attribute__((noinline, cold)) int ev_impl_choose(void) {
  const char *env = getenv("EV_HTTP_SIMD");
  if (env && *env) {
    for (int i = 0; i < EV_NIMPLS; i++)
      if (!strcmp(env, ev_impls[i].name) && ev_http_simd_available(i)) return i;
  }
  for (int i = EV_NIMPLS - 1; i > 0; i--)
    if (ev_http_simd_available(i)) return i;
  return EV_HTTP_SIMD_SCALAR;
}

static inline int ev_impl_get(void) {
  int i = __atomic_load_n(&ev_impl, __ATOMIC_RELAXED);
  if (__builtin_expect(i < 0, 0)) {
    i = ev_impl_choose();
    __atomic_store_n(&ev_impl, i, __ATOMIC_RELAXED);
  }
  return i;
}

int ev_http_simd_get(void) { return ev_impl_get(); }

int ev_http_simd_set(int impl) {
  if (!ev_http_simd_available(impl)) {
    errno = ENOTSUP;
    return -1;
  }
  __atomic_store_n(&ev_impl, impl, __ATOMIC_RELAXED);
  return 0;
}

/* ---- helpers ----------------------------------------------------------------------- */

int ev_http_token_eq(const char *s, size_t n, const char *lower) {
  size_t i = 0;
  for (; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 'A' && c <= 'Z') c |= 0x20;
    if (!lower[i] || c != (unsigned char)lower[i]) return 0;
  }
  return lower[i] == 0;
}

/* net/http's hasToken: `token` (lowercase) appears in v on a boundary of
 * SP, HTAB or ','. */
static int ev_has_token(const char *v, size_t n, const char *token) {
  size_t tl = strlen(token);
  if (tl > n) return 0;
  for (size_t sp = 0; sp + tl <= n; sp++) {
    if (sp > 0 && v[sp - 1] != ' ' && v[sp - 1] != ',' && v[sp - 1] != '\t')
      continue;
    size_t e = sp + tl;
    if (e != n && v[e] != ' ' && v[e] != ',' && v[e] != '\t') continue;
    if (ev_http_token_eq(v + sp, tl, token)) return 1;
  }
  return 0;
}

/* A field name (tchar bytes only: the parser checked) against a lowercase
 * name of the same length n made of letters and '-', a word at a time:
 * OR-ing 0x20 into a tchar byte lowercases a letter, keeps '-', and
 * makes no other tchar byte a lowercase letter or '-' (only CR, no
 * tchar, would become '-'). */
static inline int ev_name_is(const char *name, const char *lower, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t a, b;
    memcpy(&a, name + i, 8);
    memcpy(&b, lower + i, 8);
    if ((a | 0x2020202020202020ull) != b) return 0;
  }
  if (i + 4 <= n) {
    uint32_t a, b;
    memcpy(&a, name + i, 4);
    memcpy(&b, lower + i, 4);
    if ((a | 0x20202020u) != b) return 0;
    i += 4;
  }
  for (; i < n; i++)
    if (((unsigned char)name[i] | 0x20) != (unsigned char)lower[i]) return 0;
  return 1;
}

/* Where the field name starting at s[i] ends: the index of the first
 * byte that is no tchar (the caller accepts only ':' there).  With simd,
 * a ':' among the next 16 bytes is found by one SSE2 compare and the
 * bytes before it checked four at a time. */
static inline size_t ev_name_end(const unsigned char *s, size_t i, size_t n,
                                 int simd) {
#ifdef EV_HTTP_X86
  if (simd && n - i >= 16) {
    __m128i d = _mm_loadu_si128((const __m128i *)(s + i));
    uint32_t colon = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(d, _mm_set1_epi8(':')));
    if (colon) {
      size_t c = (size_t)__builtin_ctz(colon), j = 0;
      unsigned ok = 1;
      for (; j + 4 <= c; j += 4)
        ok &= ev_http_tchar[s[i + j]] & ev_http_tchar[s[i + j + 1]] &
              ev_http_tchar[s[i + j + 2]] & ev_http_tchar[s[i + j + 3]];
      for (; j < c; j++) ok &= ev_http_tchar[s[i + j]];
      if (ok) return i + c;
    }
  }
#endif
  (void)simd;
  size_t k = i;
  while (k < n && ev_http_tchar[s[k]]) k++;
  return k;
}

#ifdef EV_HTTP_X86
/* ev_hostch as a nibble table: bit h of ev_host_rows[l] is set when the
 * byte 0x(h)(l) is allowed (h < 8: obs-text never is). */
static const uint8_t ev_host_rows[16] __attribute__((aligned(16))) = {
    0xa8, 0xfc, 0xf8, 0xf8, 0xfc, 0xfc, 0xfc, 0xfc,
    0xfc, 0xfc, 0xfc, 0x7c, 0x54, 0x7c, 0xd4, 0x70};

/* The first vl (<= 16) of the 16 readable bytes at hv are all allowed:
 * two pshufb lookups (SSSE3: every CPU with SSE4.2 has it). */
__attribute__((target("ssse3"), noinline)) static int
ev_host_ok16(const unsigned char *hv, uint32_t vl) {
  const __m128i x = _mm_loadu_si128((const __m128i *)hv);
  const __m128i nib = _mm_set1_epi8(0x0f);
  __m128i row = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)ev_host_rows),
                                 _mm_and_si128(x, nib));
  __m128i bit = _mm_shuffle_epi8(
      _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)128, 0, 0, 0, 0, 0, 0, 0, 0),
      _mm_and_si128(_mm_srli_epi16(x, 4), nib));
  uint32_t bad = (uint32_t)_mm_movemask_epi8(
      _mm_cmpeq_epi8(_mm_and_si128(row, bit), _mm_setzero_si128()));
  return (bad & ((1u << vl) - 1)) == 0;
}
#endif

/* A Host value: only the bytes ev_hostch allows.  With simd (SSE4.2 or
 * better) and 16 readable bytes (end: the end of the head) one lookup of
 * 16 bytes. */
static inline int ev_host_ok(const unsigned char *hv, uint32_t vl,
                             const char *end, int simd) {
#ifdef EV_HTTP_X86
  if (simd && vl <= 16 && end - (const char *)hv >= 16) return ev_host_ok16(hv, vl);
#endif
  (void)end, (void)simd;
  uint32_t j = 0, bad = 0;
  for (; j + 4 <= vl; j += 4)
    bad |= (uint32_t)(ev_hostch[hv[j]] & ev_hostch[hv[j + 1]] &
                      ev_hostch[hv[j + 2]] & ev_hostch[hv[j + 3]]) ^ 1u;
  if (j < vl && vl >= 4) /* the last 4, overlapping */
    bad |= (uint32_t)(ev_hostch[hv[vl - 4]] & ev_hostch[hv[vl - 3]] &
                      ev_hostch[hv[vl - 2]] & ev_hostch[hv[vl - 1]]) ^ 1u;
  else
    for (; j < vl; j++) bad |= (uint32_t)ev_hostch[hv[j]] ^ 1u;
  return !bad;
}

/* ---- step 1: where the head ends -------------------------------------------------- */

/* The first LF in p[0..end - p), or NULL: memchr's answer.  On x86-64
 * the whole 16-byte blocks are looked at inline with SSE2 (a head's lines
 * are short: libc's call and set-up cost more than the search); the tail
 * goes to memchr. */
static inline const char *ev_find_lf(const char *p, const char *end) {
#ifdef EV_HTTP_X86
  const __m128i lf = _mm_set1_epi8('\n');
  for (; end - p >= 16; p += 16) {
    uint32_t m = (uint32_t)_mm_movemask_epi8(
        _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), lf));
    if (m) return p + __builtin_ctz(m);
  }
#endif
  return memchr(p, '\n', (size_t)(end - p));
}

/* The high bit of *scan records that the request line's LF was seen. */
#define EV_SCAN_LINE1 ((size_t)1 << (sizeof(size_t) * 8 - 1))

long ev_http_head_end(const char *buf, size_t len, size_t *scan,
                      const ev_http_limits_t *lim) {
  size_t pos = *scan & ~EV_SCAN_LINE1;
  size_t from = pos;
  int line1 = (*scan & EV_SCAN_LINE1) != 0;
  while (pos < len) {
    const char *nl = ev_find_lf(buf + pos, buf + len);
    if (!nl) {
      pos = len;
      break;
    }
    size_t i = (size_t)(nl - buf);
    if (!line1) {
      if (i + 1 > lim->max_request_line) return -414;
      line1 = 1;
      /* an empty request line: let the parser reject it */
      if (i == 0 || (i == 1 && buf[0] == '\r')) return (long)(i + 1);
    }
    size_t next = i + 1;
    if (next >= len || (buf[next] == '\r' && next + 1 >= len)) {
      pos = i; /* look at this LF again with more input */
      break;
    }
    size_t end = 0;
    if (buf[next] == '\n')
      end = next + 1;
    else if (buf[next] == '\r' && buf[next + 1] == '\n')
      end = next + 2;
    if (end) {
      if (end > lim->max_head) return -431;
      return (long)end;
    }
    pos = next;
  }
  if (!line1 && len > lim->max_request_line) return -414;
  if (len >= lim->max_head) return -431;
  /* Incomplete: a CR followed by anything but LF ends no line and is an
   * error wherever it is (the parser would say 400 once the head ends),
   * so a head of bare CR line ends gets its 400 now, not at the header
   * timeout.  The bytes this call saw, and the last one of the call
   * before (a CR there had no next byte yet). */
  for (const char *p = buf + (from ? from - 1 : 0), *end = buf + len - 1;
       p < end && (p = memchr(p, '\r', (size_t)(end - p))) != NULL; p++)
    if (p[1] != '\n') return -400;
  *scan = pos | (line1 ? EV_SCAN_LINE1 : 0);
  return 0;
}

/* ---- step 2: the head ------------------------------------------------------------------ */

static int ev_valid_pct(const char *p, size_t n) {
  const char *end = p + n;
  while ((p = memchr(p, '%', (size_t)(end - p))) != NULL) {
    if (end - p < 3 || ev_hexval((unsigned char)p[1]) < 0 ||
        ev_hexval((unsigned char)p[2]) < 0)
      return 0;
    p += 3;
  }
  return 1;
}

/* host [":" port] of an absolute-form or authority-form target (RFC 3986
 * reg-name / IP-literal / IPv4; no userinfo). */
static int ev_valid_authority(const char *p, size_t n) {
  if (n == 0) return 0;
  size_t i = 0;
  if (p[0] == '[') {
    const char *rb = memchr(p, ']', n);
    if (!rb) return 0;
    for (const char *q = p + 1; q < rb; q++)
      if (!(ev_hexval((unsigned char)*q) >= 0 || *q == ':' || *q == '.' ||
            *q == '%' || *q == '-' || *q == '_' || *q == '~' ||
            ((*q | 0x20) >= 'a' && (*q | 0x20) <= 'z') ||
            (*q >= '0' && *q <= '9')))
        return 0;
    i = (size_t)(rb - p) + 1;
  } else {
    while (i < n && p[i] != ':') {
      unsigned char c = (unsigned char)p[i];
      if (!ev_hostch[c] || c == '[' || c == ']') return 0;
      i++;
    }
  }
  if (i == n) return 1;
  if (p[i] != ':') return 0;
  for (i++; i < n; i++)
    if (p[i] < '0' || p[i] > '9') return 0;
  return 1;
}

/* ev_split_target, origin-form: 1 when path[0..plen) has no '?' and no
 * '%' (the common case, checked with one SSE2 compare when 16 bytes from
 * path are readable: end is the end of the head), 0 when that is not
 * known. */
static inline int ev_plain_path(const char *path, size_t plen,
                                const char *end) {
#ifdef EV_HTTP_X86
  if (plen <= 16 && end - path >= 16) {
    __m128i d = _mm_loadu_si128((const __m128i *)path);
    __m128i m = _mm_or_si128(_mm_cmpeq_epi8(d, _mm_set1_epi8('?')),
                             _mm_cmpeq_epi8(d, _mm_set1_epi8('%')));
    uint32_t bits = (uint32_t)_mm_movemask_epi8(m) & ((1u << plen) - 1);
    return bits == 0;
  }
#endif
  (void)path, (void)plen, (void)end;
  return 0;
}

static int ev_split_target(ev_http_head_t *h, const char *end) {
  const char *t = h->target;
  size_t n = h->target_len;
  h->absolute = 0;
  if (n == 1 && t[0] == '*') {
    h->path = t;
    h->path_len = 1;
    return 0;
  }
  const char *path = t;
  size_t plen = n;
  if (t[0] != '/') {
    if (h->method_len == 7 && !memcmp(h->method, "CONNECT", 7)) {
      /* authority-form: no path, no query */
      if (!ev_valid_authority(t, n)) return -1;
      h->path = t;
      h->path_len = (uint32_t)n;
      return 0;
    }
    /* absolute-form: scheme "://" authority path-abempty [ "?" query ] */
    size_t i = 0;
    while (i < n && (((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z') ||
                     (i > 0 && ((t[i] >= '0' && t[i] <= '9') || t[i] == '+' ||
                                t[i] == '-' || t[i] == '.'))))
      i++;
    if (i == 0 || i + 3 > n || memcmp(t + i, "://", 3) != 0) return -1;
    size_t a = i + 3, e = a;
    while (e < n && t[e] != '/' && t[e] != '?') e++;
    if (!ev_valid_authority(t + a, e - a)) return -1;
    h->absolute = 1;
    path = t + e;
    plen = n - e;
  }
  const char *q;
  size_t pl;
  if (ev_plain_path(path, plen, end)) {
    q = NULL;
    pl = plen;
  } else if (plen <= 32) {
    /* short: one pass for '?' and the escapes */
    for (pl = 0; pl < plen && path[pl] != '?'; pl++) {
      if (path[pl] != '%') continue;
      if (plen - pl < 3 || ev_hexval((unsigned char)path[pl + 1]) < 0 ||
          ev_hexval((unsigned char)path[pl + 2]) < 0)
        return -1;
      pl += 2; /* hex digits, neither '?' nor '%' */
    }
    q = pl < plen ? path + pl : NULL;
  } else {
    q = memchr(path, '?', plen);
    pl = q ? (size_t)(q - path) : plen;
    if (!ev_valid_pct(path, pl)) return -1;
  }
  if (q) {
    h->query = q + 1;
    h->query_len = (uint32_t)(plen - pl - 1);
  }
  if (pl == 0) { /* absolute-form without a path */
    h->path = "/";
    h->path_len = 1;
  } else {
    h->path = path;
    h->path_len = (uint32_t)pl;
  }
  return 0;
}

/* Digits only, any number of them (leading zeros too), up to 2^63 - 1:
 * what net/http accepts (strconv.ParseUint(v, 10, 63)). */
static int ev_parse_cl(const char *v, size_t n, int64_t *out) {
  if (n == 0) return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    uint64_t d = (uint64_t)(v[i] - '0');
    if (x > ((uint64_t)INT64_MAX - d) / 10) return -1;
    x = x * 10 + d;
  }
  *out = (int64_t)x;
  return 0;
}

/* What the field lines seen so far say, for the checks at the end. */
typedef struct {
  int hosts, te, te_chunked, cl_bad;
  const ev_http_hdr_t *cl_first;
  const char *expect;
  uint32_t expect_len;
} ev_fields_t;

/* The meaning of field line f (stored as hdr[h->nhdr - 1]) for the
 * engine: Host checked, Expect, Connection, Content-Length and
 * Transfer-Encoding noted.  0, or the status the head gets.  end: the end
 * of the readable bytes (the head's, or the buffer's in a prefix parse).
 * Shared by the general parse and the fast path, so both give the same
 * meaning to the same bytes. */
static inline __attribute__((always_inline)) int
ev_field(ev_http_head_t *h, ev_fields_t *fs, const ev_http_hdr_t *f,
         const char *end, int simd) {
  switch (f->name_len) {
  case 4:
    if (ev_name_is(f->name, "host", 4)) {
      fs->hosts++;
      if (!ev_host_ok((const unsigned char *)f->value, f->value_len,
                      end, simd))
        return 400;
    }
    break;
  case 6:
    if (ev_name_is(f->name, "expect", 6) && !fs->expect) {
      fs->expect = f->value;
      fs->expect_len = f->value_len;
    }
    break;
  case 10:
    if (ev_name_is(f->name, "connection", 10)) {
      if (ev_has_token(f->value, f->value_len, "close")) h->conn_close = 1;
      if (ev_has_token(f->value, f->value_len, "keep-alive"))
        h->conn_keep_alive = 1;
    }
    break;
  case 14:
    if (ev_name_is(f->name, "content-length", 14)) {
      int64_t cl;
      if (ev_parse_cl(f->value, f->value_len, &cl) != 0) return 400;
      /* repeated, it must be the same bytes ("03" and "3" conflict,
       * as for net/http) */
      if (fs->cl_first &&
          (fs->cl_first->value_len != f->value_len ||
           memcmp(fs->cl_first->value, f->value, f->value_len)))
        fs->cl_bad = 1;
      if (!fs->cl_first) fs->cl_first = f;
      h->content_length = cl;
    }
    break;
  case 17:
    if (ev_name_is(f->name, "transfer-encoding", 17)) {
      fs->te++;
      fs->te_chunked = ev_http_token_eq(f->value, f->value_len, "chunked");
    }
    break;
  }
  return 0;
}

/* The checks once every field line is in: framing, version, Host,
 * Expect.  0, or the status the head gets. */
static inline __attribute__((always_inline)) int
ev_head_checks(ev_http_head_t *h, const ev_fields_t *fs) {
  if (fs->cl_bad) return 400; /* conflicting Content-Lengths */
  if (fs->te) {
    /* HTTP/1.0 has no transfer codings: faulty framing (RFC 9112 6.1) */
    if (h->minor == 0 && h->major == 1) return 400;
    if (h->content_length >= 0) return 400; /* smuggling */
    if (fs->te > 1 || !fs->te_chunked) return 501;
    h->chunked = 1;
  }
  if (h->major != 1) return 505;
  if (fs->hosts > 1) return 400;
  if (fs->hosts == 0 && h->minor >= 1 &&
      !(h->method_len == 7 && !memcmp(h->method, "CONNECT", 7)))
    return 400;
  if (fs->expect && fs->expect_len) {
    if (!ev_has_token(fs->expect, fs->expect_len, "100-continue")) return 417;
    h->expect_continue = h->minor >= 1;
  }
  return 0;
}

/* Both entry points: with prefix == 0 buf[0..n) is the head; with
 * prefix == 1 the head is the start of buf[0..n), and any failure (one
 * the engine would answer, or bytes running out) returns nonzero, the
 * head's length going to *hlen on success. */
static inline __attribute__((always_inline)) int
ev_parse(const char *buf, size_t n, ev_http_head_t *h,
         const ev_http_limits_t *lim, int prefix, size_t *hlen) {
  const unsigned char *s = (const unsigned char *)buf;
  int impl = ev_impl_get();
  int simd = impl != EV_HTTP_SIMD_SCALAR;
  ev_scan_fn scan_value = ev_impls[impl].value;
  ev_scan_fn scan_target = ev_impls[impl].target;
  ev_http_hdr_t *hdr = h->hdr;
  memset(h, 0, sizeof(*h));
  h->hdr = hdr;
  h->content_length = -1;

  /* request-line */
  size_t i = 0;
  if (n >= 4 && !memcmp(buf, "GET ", 4))
    i = 3;
  else
    while (i < n && ev_http_tchar[s[i]]) i++;
  if (i == 0 || i >= n || s[i] != ' ') return 400;
  h->method = buf;
  h->method_len = (uint32_t)i;
  size_t t0 = ++i;
#ifdef EV_HTTP_X86
  uint32_t tm;
  if (simd && n - i >= 16 && (tm = ev_target_bad16_sse2(buf + i)) != 0)
    i += (size_t)__builtin_ctz(tm);
  else
#endif
    i += scan_target(buf + i, n - i);
  if (i == t0 || i >= n || s[i] != ' ') return 400;
  h->target = buf + t0;
  h->target_len = (uint32_t)(i - t0);
  i++;
  if (n - i >= 10 && !memcmp(buf + i, "HTTP/1.1\r\n", 10)) {
    h->major = h->minor = 1;
    i += 10;
  } else {
    if (n - i < 9 || memcmp(buf + i, "HTTP/", 5) != 0 || s[i + 5] < '0' ||
        s[i + 5] > '9' || s[i + 6] != '.' || s[i + 7] < '0' || s[i + 7] > '9')
      return 400;
    h->major = (uint8_t)(s[i + 5] - '0');
    h->minor = (uint8_t)(s[i + 7] - '0');
    i += 8;
    if (s[i] == '\r') i++;
    if (i >= n || s[i] != '\n') return 400;
    i++;
  }
  if (i > lim->max_request_line) return 414;
  if (buf[t0] == '/' && ev_plain_path(h->target, h->target_len, buf + n)) {
    /* origin-form without '?' or '%' (what ev_split_target finds too) */
    h->path = h->target;
    h->path_len = h->target_len;
  } else if (ev_split_target(h, buf + n) != 0) {
    return 400;
  }
  h->is_head = h->method_len == 4 && !memcmp(h->method, "HEAD", 4);

  /* field lines */
  ev_fields_t fs = {0};
  for (;;) {
    if (i >= n) return 400;
    if (s[i] == '\n') {
      i++;
      break;
    }
    if (s[i] == '\r') {
      if (i + 1 < n && s[i + 1] == '\n') {
        i += 2;
        break;
      }
      return 400;
    }
    size_t k = ev_name_end(s, i, n, simd);
    /* empty name, whitespace before ':' or a folded line: all 400 */
    if (k == i || k >= n || s[k] != ':') return 400;
    size_t v = k + 1;
    while (v < n && (s[v] == ' ' || s[v] == '\t')) v++;
    size_t e;
#ifdef EV_HTTP_X86
    uint32_t vm;
    if (simd && n - v >= 16 && (vm = ev_value_bad16_sse2(buf + v)) != 0)
      e = v + (size_t)__builtin_ctz(vm);
    else
#endif
      e = v + scan_value(buf + v, n - v);
    size_t next;
    if (e < n && s[e] == '\n') {
      next = e + 1;
    } else if (e + 1 < n && s[e] == '\r' && s[e + 1] == '\n') {
      next = e + 2;
    } else {
      return 400;
    }
    while (e > v && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    if (h->nhdr >= lim->max_headers) return 431;
    ev_http_hdr_t *f = &hdr[h->nhdr++];
    f->name = buf + i;
    f->name_len = (uint32_t)(k - i);
    f->value = buf + v;
    f->value_len = (uint32_t)(e - v);

    int fst = ev_field(h, &fs, f, buf + n, simd);
    if (fst) return fst;
    i = next;
  }
  if (prefix) {
    if (i > lim->max_head) return 431;
    n = i;
    *hlen = i;
  } else if (i != n) {
    return 400;
  }

  int cst = ev_head_checks(h, &fs);
  if (cst) return cst;
  h->head_len = (uint32_t)n;
  return 0;
}

long ev_http_parse_prefix_general(const char *buf, size_t len,
                                  ev_http_head_t *h,
                                  const ev_http_limits_t *lim);

#ifdef EV_HTTP_X86
/* ---- the fast path: a common head in one pass --------------------------------------
 * For a head of the common shape: a token method, an origin-form target
 * without '%', "HTTP/1.1" and CRLF line ends, field lines "name:" OWS
 * value, every line found with 16-byte class masks instead of a byte at a
 * time.  The classes are nibble tables (two pshufb lookups: SSSE3, which
 * every CPU with SSE4.2 has): bit h of row l is set when byte 0x(h)(l)
 * belongs to the class (h < 8; obs-text, 0x80-0xff, is added or left out
 * by its sign).  It answers only when it is sure: the head's length when
 * the general parse (ev_parse) accepts it with the same result, else 0,
 * and the caller then runs the general parse from the start.  The meaning
 * of the fields and the checks at the end are ev_field and
 * ev_head_checks, as in the general parse. */
static const uint8_t ev_rows_tchar[16] __attribute__((aligned(16))) = {
    0xe8, 0xfc, 0xf8, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc,
    0xf8, 0xf8, 0xf4, 0x54, 0xd0, 0x54, 0xf4, 0x70};
/* HTAB, SP..'~' (obs-text too, by its sign) */
static const uint8_t ev_rows_value[16] __attribute__((aligned(16))) = {
    0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc,
    0xfc, 0xfd, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0x7c};
/* '!'..'~' (obs-text too): request-target bytes */
static const uint8_t ev_rows_target[16] __attribute__((aligned(16))) = {
    0xf8, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc,
    0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0x7c};
/* request-target bytes other than '?' and '%' */
static const uint8_t ev_rows_path[16] __attribute__((aligned(16))) = {
    0xf8, 0xfc, 0xfc, 0xfc, 0xfc, 0xf8, 0xfc, 0xfc,
    0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0xfc, 0x74};

/* The 16 bytes at p when they are inside [.., end), else the 16 that end
 * at end (the caller makes sure there are 16 before end), with *sh the
 * number of them before p: a mask of the vector shifted right by *sh has
 * bit j for byte p[j], and no bit for bytes at or past end. */
__attribute__((target("ssse3"))) static inline __m128i
ev_fp_load(const char *p, const char *end, unsigned *sh) {
  if (end - p >= 16) {
    *sh = 0;
    return _mm_loadu_si128((const __m128i *)p);
  }
  *sh = (unsigned)(16 - (end - p));
  return _mm_loadu_si128((const __m128i *)(end - 16));
}

/* A byte's place in the nibble tables: its low nibble, and the bit of its
 * high nibble (0 for obs-text). */
typedef struct {
  __m128i lo, bit, neg;
} ev_fp_nib_t;

__attribute__((target("ssse3"))) static inline ev_fp_nib_t
ev_fp_nib(__m128i d) {
  const __m128i nib = _mm_set1_epi8(0x0f);
  ev_fp_nib_t x;
  x.lo = _mm_and_si128(d, nib);
  x.bit = _mm_shuffle_epi8(
      _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)128, 0, 0, 0, 0, 0, 0, 0, 0),
      _mm_and_si128(_mm_srli_epi16(d, 4), nib));
  x.neg = _mm_cmplt_epi8(d, _mm_setzero_si128());
  return x;
}

/* The bytes outside class rows, as a mask (bit j: byte j); obs_ok: bytes
 * 0x80-0xff belong to the class. */
__attribute__((target("ssse3"))) static inline uint32_t
ev_fp_out(ev_fp_nib_t x, const uint8_t *rows, int obs_ok) {
  __m128i in = _mm_and_si128(
      _mm_shuffle_epi8(_mm_load_si128((const __m128i *)rows), x.lo), x.bit);
  __m128i out = _mm_cmpeq_epi8(in, _mm_setzero_si128());
  if (obs_ok) out = _mm_andnot_si128(x.neg, out);
  return (uint32_t)_mm_movemask_epi8(out);
}

/* From p on, the first byte outside class rows (obs-text in it), or NULL
 * when there is none before end. */
__attribute__((target("ssse3"))) static inline const char *
ev_fp_find_out(const char *p, const char *end, const uint8_t *rows,
               int obs_ok) {
  while (p < end) {
    unsigned sh;
    ev_fp_nib_t x = ev_fp_nib(ev_fp_load(p, end, &sh));
    uint32_t m = ev_fp_out(x, rows, obs_ok) >> sh;
    if (m) return p + __builtin_ctz(m);
    p += 16 - sh;
  }
  return NULL;
}

static inline uint32_t ev_word4(const char *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
}

/* ev_field for the fields the fast path does not take in itself (not
 * Host): out of line, they are rare. */
static __attribute__((noinline)) int
ev_field_slow(ev_http_head_t *h, ev_fields_t *fs, const ev_http_hdr_t *f,
              const char *end) {
  return ev_field(h, fs, f, end, 1);
}

/* ev_fp_find_out out of line: the rest of a long target, name or value. */
__attribute__((target("ssse3"), noinline)) static const char *
ev_fp_find_out_slow(const char *p, const char *end, const uint8_t *rows,
                    int obs_ok) {
  return ev_fp_find_out(p, end, rows, obs_ok);
}

/* The fast path's body.  Where it is not sure it goes to slow: with
 * fallback the general parse from the start (a tail call), else 0. */
__attribute__((target("ssse3"), always_inline)) static inline long
ev_parse_fast(const char *buf, size_t len, ev_http_head_t *h,
              const ev_http_limits_t *lim, int fallback) {
  const unsigned char *s = (const unsigned char *)buf;
  const char *end = buf + len;
  if (len < 32) goto slow;
  ev_http_hdr_t *hdr = h->hdr;
  memset(h, 0, sizeof(*h));
  h->hdr = hdr;
  h->content_length = -1;

  /* request-line: the method */
  size_t i;
  if (ev_word4(buf) == ev_word4("GET ")) {
    i = 3;
  } else {
    uint32_t m = ev_fp_out(
        ev_fp_nib(_mm_loadu_si128((const __m128i *)buf)), ev_rows_tchar, 0);
    if (m == 0) goto slow;
    i = (size_t)__builtin_ctz(m);
    if (i == 0 || s[i] != ' ') goto slow;
    h->is_head = i == 4 && ev_word4(buf) == ev_word4("HEAD");
  }
  h->method = buf;
  h->method_len = (uint32_t)i;
  /* the target: origin-form, a path without '%', maybe a query; 16
   * bytes from t0 (<= 16) are there: len >= 32 */
  const char *t = buf + i + 1;
  if (*t != '/') goto slow;
  const char *p;
  uint32_t m = ev_fp_out(ev_fp_nib(_mm_loadu_si128((const __m128i *)t)),
                         ev_rows_path, 1);
  if (m)
    p = t + __builtin_ctz(m);
  else if (!(p = ev_fp_find_out_slow(t + 16, end, ev_rows_path, 1)))
    goto slow;
  h->path = t;
  h->path_len = (uint32_t)(p - t);
  if (*p == '?') {
    const char *q = p + 1;
    if (!(p = ev_fp_find_out_slow(q, end, ev_rows_target, 1))) goto slow;
    h->query = q;
    h->query_len = (uint32_t)(p - q);
  }
  if (*p != ' ') goto slow;
  h->target = t;
  h->target_len = (uint32_t)(p - t);
  /* the version and the line's end */
  i = (size_t)(p + 1 - buf);
  uint64_t v8;
  uint16_t v2;
  if (len - i < 10) goto slow;
  memcpy(&v8, buf + i, 8);
  memcpy(&v2, buf + i + 8, 2);
  if (v8 != 0x312e312f50545448ull /* "HTTP/1.1" */ || v2 != 0x0a0d)
    goto slow;
  i += 10;
  if (i > lim->max_request_line) goto slow;
  h->major = h->minor = 1;

  /* field lines */
  ev_fields_t fs;
  int rare = 0; /* a field other than Host that ev_field looks at */
  uint32_t hosts = 0;
  uint32_t nh = 0, maxh = lim->max_headers;
  for (;;) {
    if (len - i < 2) goto slow;
    if (s[i] == '\r') {
      if (s[i + 1] != '\n') goto slow;
      i += 2;
      break;
    }
    /* the name: tchar bytes up to ':'.  "Host:" (every HTTP/1.1 request
     * has it) is known by one word: OR-ing 0x20 into a byte gives 'h',
     * 'o', 's' or 't' only from that letter in either case. */
    unsigned sh;
    size_t k;
    int is_host = len - i >= 5 && s[i + 4] == ':' &&
                  (ev_word4(buf + i) | 0x20202020u) == ev_word4("host");
    if (is_host) {
      k = i + 4;
    } else {
      ev_fp_nib_t x = ev_fp_nib(ev_fp_load(buf + i, end, &sh));
      uint32_t tb = ev_fp_out(x, ev_rows_tchar, 0) >> sh;
      if (tb) {
        k = i + (size_t)__builtin_ctz(tb);
      } else { /* a name of 16 bytes or more */
        const char *q =
            ev_fp_find_out_slow(buf + i + 16 - sh, end, ev_rows_tchar, 0);
        if (!q) goto slow;
        k = (size_t)(q - buf);
      }
      if (k == i || s[k] != ':') goto slow;
    }
    /* OWS, then the value up to the first byte no value has, which must
     * be the CR of CRLF */
    size_t v = k + 1;
    if (v < len && s[v] == ' ') v++;
    if (v < len && (s[v] == ' ' || s[v] == '\t'))
      while (v < len && (s[v] == ' ' || s[v] == '\t')) v++;
    if (v >= len) goto slow;
    ev_fp_nib_t y = ev_fp_nib(ev_fp_load(buf + v, end, &sh));
    uint32_t vb = ev_fp_out(y, ev_rows_value, 1) >> sh;
    size_t e;
    if (vb) {
      e = v + (size_t)__builtin_ctz(vb);
    } else {
      const char *q = ev_fp_find_out_slow(buf + v + 16 - sh, end, ev_rows_value, 1);
      if (!q) goto slow;
      e = (size_t)(q - buf);
    }
    if (len - e < 2 || s[e] != '\r' || s[e + 1] != '\n') goto slow;
    size_t next = e + 2;
    if (e > v && (s[e - 1] == ' ' || s[e - 1] == '\t'))
      while (e > v && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    if (nh >= maxh) goto slow;
    ev_http_hdr_t *f = &hdr[nh++];
    uint32_t nl = (uint32_t)(k - i), vl = (uint32_t)(e - v);
    f->name = buf + i;
    f->name_len = nl;
    f->value = buf + v;
    f->value_len = vl;
    if (is_host) { /* (a 4-byte name "host" is always found above) */
      /* ev_field's Host: counted, its bytes checked (ev_hostch); when
       * the value was found in y, y holds all of it */
      hosts++;
      if (vb) {
        if ((ev_fp_out(y, ev_host_rows, 0) >> sh) & ((1u << vl) - 1)) goto slow;
      } else if (!ev_host_ok((const unsigned char *)f->value, vl, end, 1)) {
        goto slow;
      }
    } else if (nl == 6 || nl == 10 || nl == 14 || nl == 17) {
      if (!rare) {
        memset(&fs, 0, sizeof(fs));
        rare = 1;
      }
      if (ev_field_slow(h, &fs, f, end) != 0) goto slow;
    }
    i = next;
  }
  if (i > lim->max_head) goto slow;
  h->nhdr = nh;
  if (rare) {
    fs.hosts = (int)hosts;
    if (ev_head_checks(h, &fs) != 0) goto slow;
  } else if (hosts != 1) {
    goto slow; /* what ev_head_checks says of no Host or two */
  }
  h->head_len = (uint32_t)i;
  return (long)i;
slow:
  return fallback ? ev_http_parse_prefix_general(buf, len, h, lim) : 0;
}

__attribute__((target("ssse3"))) static long
ev_parse_fast_only(const char *buf, size_t len, ev_http_head_t *h,
                   const ev_http_limits_t *lim) {
  return ev_parse_fast(buf, len, h, lim, 0);
}

/* The same with AVX2 chosen: VEX encoding (three operands, fewer moves). */
__attribute__((target("avx2"))) static long
ev_parse_fast_or_general_avx2(const char *buf, size_t len, ev_http_head_t *h,
                              const ev_http_limits_t *lim) {
  return ev_parse_fast(buf, len, h, lim, 1);
}

__attribute__((target("ssse3"))) static long
ev_parse_fast_or_general(const char *buf, size_t len, ev_http_head_t *h,
                         const ev_http_limits_t *lim) {
  return ev_parse_fast(buf, len, h, lim, 1);
}

#endif

int ev_http_parse_head(const char *buf, size_t n, ev_http_head_t *h,
                       const ev_http_limits_t *lim) {
  return ev_parse(buf, n, h, lim, 0, NULL);
}

/* Out of line: ev_http_parse_prefix calls it only when the fast path is
 * not sure (and with the scalar scanner), and keeps no frame of its own. */
__attribute__((noinline)) long
ev_http_parse_prefix_general(const char *buf, size_t len, ev_http_head_t *h,
                             const ev_http_limits_t *lim) {
  size_t hlen = 0;
  if (ev_parse(buf, len, h, lim, 1, &hlen) != 0) return 0;
  return (long)hlen;
}

long ev_http_parse_prefix_fast(const char *buf, size_t len, ev_http_head_t *h,
                               const ev_http_limits_t *lim) {
#ifdef EV_HTTP_X86
  if (ev_impl_get() != EV_HTTP_SIMD_SCALAR) return ev_parse_fast_only(buf, len, h, lim);
#endif
  (void)buf, (void)len, (void)h, (void)lim;
  return 0;
}

long ev_http_parse_prefix(const char *buf, size_t len, ev_http_head_t *h,
                          const ev_http_limits_t *lim) {
#ifdef EV_HTTP_X86
  int impl = ev_impl_get();
  if (impl == EV_HTTP_SIMD_AVX2)
    return ev_parse_fast_or_general_avx2(buf, len, h, lim);
  if (impl != EV_HTTP_SIMD_SCALAR)
    return ev_parse_fast_or_general(buf, len, h, lim);
#endif
  return ev_http_parse_prefix_general(buf, len, h, lim);
}

/* ---- chunked bodies -------------------------------------------------------------------- */

/* A trailer field line (without its line end). */
static int ev_trailer_ok(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t k = 0;
  while (k < n && ev_http_tchar[s[k]]) k++;
  if (k == 0 || k >= n || s[k] != ':') return 0;
  for (k++; k < n; k++)
    if (!ev_valuech(s[k])) return 0;
  return 1;
}

long ev_http_chunked_step(ev_http_chunked_t *c, const char *in, size_t len,
                          uint64_t max_body, size_t max_data,
                          const char **data, size_t *dlen) {
  *data = NULL;
  *dlen = 0;
  size_t i = 0;
  for (;;) {
    switch (c->state) {
    case EV_HTTP_CK_SIZE: {
      size_t avail = len - i;
      size_t look = avail < EV_HTTP_CHUNK_LINE_MAX + 2 ? avail
                                                       : EV_HTTP_CHUNK_LINE_MAX + 2;
      const char *nl = memchr(in + i, '\n', look);
      if (!nl) {
        if (avail >= EV_HTTP_CHUNK_LINE_MAX + 2) return -400;
        return (long)i;
      }
      size_t L = (size_t)(nl - (in + i)); /* bytes before the LF */
      /* CRLF only: a bare LF, or a CR anywhere else, is bad framing */
      if (L == 0 || in[i + L - 1] != '\r' || memchr(in + i, '\r', L - 1))
        return -400;
      const char *line = in + i;
      size_t ln = L - 1, d = 0;
      uint64_t size = 0;
      while (d < ln && ev_hexval((unsigned char)line[d]) >= 0) {
        if (d == 16) return -400; /* more than 64 bits */
        size = (size << 4) | (uint64_t)ev_hexval((unsigned char)line[d]);
        d++;
      }
      if (d == 0) return -400;
      if (d < ln && line[d] != ';') {
        /* only trailing whitespace may follow the size (as net/http) */
        for (size_t w = d; w < ln; w++)
          if (line[w] != ' ' && line[w] != '\t') return -400;
      }
      i += L + 1;
      if (size == 0) {
        c->state = EV_HTTP_CK_TRAILER;
      } else {
        if (size > max_body || c->total > max_body - size) return -413;
        c->left = size;
        c->state = EV_HTTP_CK_DATA;
      }
      continue;
    }
    case EV_HTTP_CK_DATA: {
      if (i == len || max_data == 0) return (long)i;
      size_t take = len - i;
      if (take > c->left) take = (size_t)c->left;
      if (take > max_data) take = max_data;
      *data = in + i;
      *dlen = take;
      c->left -= take;
      c->total += take;
      i += take;
      if (c->left == 0) c->state = EV_HTTP_CK_DATA_END;
      return (long)i;
    }
    case EV_HTTP_CK_DATA_END:
      if (len - i < 2) return (long)i;
      if (in[i] != '\r' || in[i + 1] != '\n') return -400;
      i += 2;
      c->state = EV_HTTP_CK_SIZE;
      continue;
    case EV_HTTP_CK_TRAILER: {
      const char *nl = memchr(in + i, '\n', len - i);
      if (!nl) {
        if (c->trailer_bytes + (len - i) > EV_HTTP_TRAILER_MAX) return -400;
        return (long)i;
      }
      size_t L = (size_t)(nl - (in + i));
      c->trailer_bytes += (uint32_t)(L + 1);
      if (c->trailer_bytes > EV_HTTP_TRAILER_MAX) return -400;
      /* CRLF, as every line of chunked framing */
      if (L == 0 || in[i + L - 1] != '\r') return -400;
      size_t ln = L - 1;
      if (ln == 0) {
        i += L + 1;
        c->state = EV_HTTP_CK_DONE;
        return (long)i;
      }
      /* folded trailer lines are rejected as folded header lines are */
      if (!ev_trailer_ok(in + i, ln)) return -400;
      i += L + 1;
      continue;
    }
    default:
      return (long)i;
    }
  }
}
