/*
 * eventer_x25519.c - X25519 (RFC 7748) for the TLS opset's key shares:
 * field arithmetic modulo p = 2^255 - 19, a fixed-base comb on the
 * twisted Edwards form of Curve25519 for key generation, and the
 * Montgomery ladder for the exchange.  Written from the mathematics:
 * RFC 7748; Bernstein, Duif, Lange, Schwabe, Yang, "High-speed
 * high-security signatures" (the signed radix-16 comb over a table of
 * multiples of the base point); Hisil, Wong, Carter, Dawson, "Twisted
 * Edwards curves revisited" (extended coordinates).
 *
 * Constant time.  Secret data (the scalar and everything computed from
 * it) never decides a branch or a memory address: table entries are
 * chosen by reading all eight of a row and keeping one with masks, the
 * ladder swaps with masks, and the reductions carry without testing.
 * test_eventer_x25519's "constant_time" case runs this under valgrind
 * memcheck with the scalar marked undefined and requires no report.
 *
 * ---- the field ----------------------------------------------------------
 * An element is five 64-bit limbs in radix 2^51: f = f0 + f1 2^51 +
 * f2 2^102 + f3 2^153 + f4 2^204.  Limbs are "loose": below 2^52 between
 * operations (every operation ends with a carry pass), so products of two
 * limbs and their sums (times 19 at most) fit an unsigned __int128.  Since
 * 2^255 = 19 (mod p), a product's limb that lands at 2^255 or above folds
 * back into the low limbs multiplied by 19.  Only fe_tobytes reduces
 * fully (to the unique value below p).
 */
#include "eventer_x25519.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;
typedef uint64_t fe[5];

#define M51 ((UINT64_C(1) << 51) - 1)

static void fe_copy(fe h, const fe f) { memcpy(h, f, sizeof(fe)); }

static void fe_set(fe h, uint64_t v) {
  h[0] = v;
  h[1] = h[2] = h[3] = h[4] = 0;
}

/* one pass of carries; limbs end below 2^51 + 2^16 */
static inline void fe_carry(fe h) {
  uint64_t c;
  c = h[0] >> 51; h[0] &= M51; h[1] += c;
  c = h[1] >> 51; h[1] &= M51; h[2] += c;
  c = h[2] >> 51; h[2] &= M51; h[3] += c;
  c = h[3] >> 51; h[3] &= M51; h[4] += c;
  c = h[4] >> 51; h[4] &= M51; h[0] += 19 * c;
}

static inline void fe_add(fe h, const fe f, const fe g) {
  for (int i = 0; i < 5; i++) h[i] = f[i] + g[i];
  fe_carry(h);
}

/* f - g computed as f + 2p - g: 2p's limbs (2^52 - 38, 2^52 - 2, ...) are
 * above any loose limb of g, so no limb goes negative */
static inline void fe_sub(fe h, const fe f, const fe g) {
  h[0] = f[0] + (UINT64_C(0xFFFFFFFFFFFDA)) - g[0];
  h[1] = f[1] + (UINT64_C(0xFFFFFFFFFFFFE)) - g[1];
  h[2] = f[2] + (UINT64_C(0xFFFFFFFFFFFFE)) - g[2];
  h[3] = f[3] + (UINT64_C(0xFFFFFFFFFFFFE)) - g[3];
  h[4] = f[4] + (UINT64_C(0xFFFFFFFFFFFFE)) - g[4];
  fe_carry(h);
}

static inline void fe_neg(fe h, const fe f) {
  fe z = {0, 0, 0, 0, 0};
  fe_sub(h, z, f);
}

/* the five 128-bit column sums r0..r4 back to loose limbs */
static inline void fe_reduce128(fe h, u128 r0, u128 r1, u128 r2, u128 r3,
                                u128 r4) {
  r1 += (uint64_t)(r0 >> 51);
  r2 += (uint64_t)(r1 >> 51);
  r3 += (uint64_t)(r2 >> 51);
  r4 += (uint64_t)(r3 >> 51);
  /* the carry out of limb 4 is worth 2^255 = 19 */
  u128 t = (u128)((uint64_t)r0 & M51) + (u128)(uint64_t)(r4 >> 51) * 19;
  h[0] = (uint64_t)t & M51;
  h[1] = ((uint64_t)r1 & M51) + (uint64_t)(t >> 51);
  h[2] = (uint64_t)r2 & M51;
  h[3] = (uint64_t)r3 & M51;
  h[4] = (uint64_t)r4 & M51;
}

/* h = f g.  Column k collects f_i g_j with i + j = k, and with
 * i + j = k + 5 times 19 (2^255 = 19). */
static void fe_mul(fe h, const fe f, const fe g) {
  uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
  uint64_t g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3], g4 = g[4];
  uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
  u128 r0 = (u128)f0 * g0 + (u128)f1 * g4_19 + (u128)f2 * g3_19 +
            (u128)f3 * g2_19 + (u128)f4 * g1_19;
  u128 r1 = (u128)f0 * g1 + (u128)f1 * g0 + (u128)f2 * g4_19 +
            (u128)f3 * g3_19 + (u128)f4 * g2_19;
  u128 r2 = (u128)f0 * g2 + (u128)f1 * g1 + (u128)f2 * g0 +
            (u128)f3 * g4_19 + (u128)f4 * g3_19;
  u128 r3 = (u128)f0 * g3 + (u128)f1 * g2 + (u128)f2 * g1 + (u128)f3 * g0 +
            (u128)f4 * g4_19;
  u128 r4 = (u128)f0 * g4 + (u128)f1 * g3 + (u128)f2 * g2 + (u128)f3 * g1 +
            (u128)f4 * g0;
  fe_reduce128(h, r0, r1, r2, r3, r4);
}

/* h = f^2: fe_mul with the symmetric products counted twice */
static void fe_sq(fe h, const fe f) {
  uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
  uint64_t f0_2 = 2 * f0, f1_2 = 2 * f1;
  uint64_t f1_38 = 38 * f1, f2_38 = 38 * f2, f3_38 = 38 * f3;
  uint64_t f3_19 = 19 * f3, f4_19 = 19 * f4;
  u128 r0 = (u128)f0 * f0 + (u128)f1_38 * f4 + (u128)f2_38 * f3;
  u128 r1 = (u128)f0_2 * f1 + (u128)f2_38 * f4 + (u128)f3_19 * f3;
  u128 r2 = (u128)f0_2 * f2 + (u128)f1 * f1 + (u128)f3_38 * f4;
  u128 r3 = (u128)f0_2 * f3 + (u128)f1_2 * f2 + (u128)f4_19 * f4;
  u128 r4 = (u128)f0_2 * f4 + (u128)f1_2 * f3 + (u128)f2 * f2;
  fe_reduce128(h, r0, r1, r2, r3, r4);
}

static void fe_sqn(fe h, const fe f, int n) {
  fe_sq(h, f);
  while (--n > 0) fe_sq(h, h);
}

/* h = f * s for a small constant s (< 2^20) */
static void fe_mul_small(fe h, const fe f, uint32_t s) {
  u128 r0 = (u128)f[0] * s, r1 = (u128)f[1] * s, r2 = (u128)f[2] * s,
       r3 = (u128)f[3] * s, r4 = (u128)f[4] * s;
  fe_reduce128(h, r0, r1, r2, r3, r4);
}

/* h = z^(p-2) = 1/z (Fermat; 0 for z = 0).  p - 2 = 2^255 - 21 is
 * reached as (2^250 - 1) 2^5 + 11 through z^(2^k - 1) for
 * k = 5, 10, 20, 40, 50, 100, 200, 250: 254 squarings, 11 products. */
static void fe_invert(fe h, const fe z) {
  fe z2, z9, z11, a, b, c, t;
  fe_sq(z2, z);          /* z^2 */
  fe_sqn(t, z2, 2);      /* z^8 */
  fe_mul(z9, t, z);      /* z^9 */
  fe_mul(z11, z9, z2);   /* z^11 */
  fe_sq(t, z11);         /* z^22 */
  fe_mul(a, t, z9);      /* a = z^(2^5 - 1) = z^31 */
  fe_sqn(t, a, 5);
  fe_mul(b, t, a);       /* b = z^(2^10 - 1) */
  fe_sqn(t, b, 10);
  fe_mul(c, t, b);       /* c = z^(2^20 - 1) */
  fe_sqn(t, c, 20);
  fe_mul(t, t, c);       /* z^(2^40 - 1) */
  fe_sqn(t, t, 10);
  fe_mul(a, t, b);       /* a = z^(2^50 - 1) */
  fe_sqn(t, a, 50);
  fe_mul(b, t, a);       /* b = z^(2^100 - 1) */
  fe_sqn(t, b, 100);
  fe_mul(t, t, b);       /* z^(2^200 - 1) */
  fe_sqn(t, t, 50);
  fe_mul(t, t, a);       /* z^(2^250 - 1) */
  fe_sqn(t, t, 5);       /* z^(2^255 - 32) */
  fe_mul(h, t, z11);     /* z^(2^255 - 21) */
}

/* h = f^e for a PUBLIC exponent e (32 bytes, little-endian): only the
 * table's one-time set-up uses it */
static void fe_pow_public(fe h, const fe f, const uint8_t e[32]) {
  fe r;
  fe_set(r, 1);
  for (int i = 255; i >= 0; i--) {
    fe_sq(r, r);
    if ((e[i >> 3] >> (i & 7)) & 1) fe_mul(r, r, f);
  }
  fe_copy(h, r);
}

static void fe_frombytes(fe h, const uint8_t s[32]) {
  uint64_t w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = 0;
    for (int j = 7; j >= 0; j--) w[i] = (w[i] << 8) | s[8 * i + j];
  }
  h[0] = w[0] & M51;
  h[1] = ((w[0] >> 51) | (w[1] << 13)) & M51;
  h[2] = ((w[1] >> 38) | (w[2] << 26)) & M51;
  h[3] = ((w[2] >> 25) | (w[3] << 39)) & M51;
  h[4] = (w[3] >> 12) & M51; /* bit 255 dropped (RFC 7748 5) */
}

/* the unique representative below p, little-endian */
static void fe_tobytes(uint8_t s[32], const fe f) {
  fe h, t;
  fe_copy(h, f);
  fe_carry(h);
  fe_carry(h); /* limbs < 2^51: h < 2^255 < 2p */
  /* h >= p exactly when h + 19 >= 2^255: compute t = h + 19 - 2^255 and
   * keep it when bit 255 of h + 19 is set */
  t[0] = h[0] + 19;
  t[1] = h[1] + (t[0] >> 51); t[0] &= M51;
  t[2] = h[2] + (t[1] >> 51); t[1] &= M51;
  t[3] = h[3] + (t[2] >> 51); t[2] &= M51;
  t[4] = h[4] + (t[3] >> 51); t[3] &= M51;
  uint64_t ge = t[4] >> 51; /* 0 or 1 */
  t[4] &= M51;
  uint64_t mask = 0 - ge;
  for (int i = 0; i < 5; i++) h[i] = (t[i] & mask) | (h[i] & ~mask);
  uint64_t w[4] = {h[0] | (h[1] << 51), (h[1] >> 13) | (h[2] << 38),
                   (h[2] >> 26) | (h[3] << 25), (h[3] >> 39) | (h[4] << 12)};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 8; j++) s[8 * i + j] = (uint8_t)(w[i] >> (8 * j));
}

static int fe_equal_public(const fe f, const fe g) {
  uint8_t a[32], b[32];
  fe_tobytes(a, f);
  fe_tobytes(b, g);
  return memcmp(a, b, 32) == 0;
}

/* f = g when flag (0 or 1), by masks */
static inline void fe_cmov(fe f, const fe g, uint64_t flag) {
  uint64_t mask = 0 - flag;
  for (int i = 0; i < 5; i++) f[i] ^= mask & (f[i] ^ g[i]);
}

/* swaps f and g when flag (0 or 1), by masks */
static inline void fe_cswap(fe f, fe g, uint64_t flag) {
  uint64_t mask = 0 - flag;
  for (int i = 0; i < 5; i++) {
    uint64_t x = mask & (f[i] ^ g[i]);
    f[i] ^= x;
    g[i] ^= x;
  }
}

/* ---- the Edwards curve ----------------------------------------------------
 * Curve25519 v^2 = u^3 + 486662 u^2 + u is birationally equivalent to the
 * twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2, d = -121665/121666,
 * by u = (1 + y)/(1 - y) (RFC 7748 4.1); the base point u = 9 maps to
 * y = 4/5.  A point is kept in extended coordinates (X:Y:Z:T), x = X/Z,
 * y = Y/Z, x y = T/Z.  The addition below (Hisil et al., a = -1, with
 * k = 2d) is complete on this curve (d is not a square mod p), so it adds
 * equal points and the neutral element (0, 1) as well as any others:
 * the comb needs no special cases, hence no branches. */
typedef struct {
  fe X, Y, Z, T;
} ge_ext;

/* a point with Z = 1 kept as (y + x, y - x, 2 d x y): what the mixed
 * addition reads.  The neutral element is (1, 1, 0). */
typedef struct {
  fe ypx, ymx, xy2d;
} ge_pre;
_Static_assert(sizeof(ge_pre) == 15 * sizeof(uint64_t), "ge_pre is 15 words");

static fe ev_d2; /* 2d, set with the table */

/* r = p + q */
static void ge_madd(ge_ext *r, const ge_ext *p, const ge_pre *q) {
  fe a, b, c, d, e, f, g, h;
  fe_sub(a, p->Y, p->X);
  fe_mul(a, a, q->ymx);   /* A = (Y1 - X1)(y2 - x2) */
  fe_add(b, p->Y, p->X);
  fe_mul(b, b, q->ypx);   /* B = (Y1 + X1)(y2 + x2) */
  fe_mul(c, p->T, q->xy2d); /* C = T1 2d x2 y2 */
  fe_add(d, p->Z, p->Z);  /* D = 2 Z1 (Z2 = 1) */
  fe_sub(e, b, a);        /* E = B - A */
  fe_sub(f, d, c);        /* F = D - C */
  fe_add(g, d, c);        /* G = D + C */
  fe_add(h, b, a);        /* H = B + A */
  fe_mul(r->X, e, f);
  fe_mul(r->Y, g, h);
  fe_mul(r->T, e, h);
  fe_mul(r->Z, f, g);
}

/* r = 2p (Hisil et al., a = -1) */
static void ge_dbl(ge_ext *r, const ge_ext *p) {
  fe a, b, c, e, f, g, h;
  fe_sq(a, p->X);         /* A = X1^2 */
  fe_sq(b, p->Y);         /* B = Y1^2 */
  fe_sq(c, p->Z);
  fe_add(c, c, c);        /* C = 2 Z1^2 */
  fe_add(e, p->X, p->Y);
  fe_sq(e, e);
  fe_sub(e, e, a);
  fe_sub(e, e, b);        /* E = (X1 + Y1)^2 - A - B = 2 X1 Y1 */
  fe_sub(g, b, a);        /* G = -A + B */
  fe_sub(f, g, c);        /* F = G - C */
  fe_add(h, a, b);
  fe_neg(h, h);           /* H = -A - B */
  fe_mul(r->X, e, f);
  fe_mul(r->Y, g, h);
  fe_mul(r->T, e, h);
  fe_mul(r->Z, f, g);
}

/* r = p + q, both extended (the same formulas with Z2 kept): the
 * table's set-up only */
static void ge_add(ge_ext *r, const ge_ext *p, const ge_ext *q) {
  fe a, b, c, d, e, f, g, h, t;
  fe_sub(a, p->Y, p->X);
  fe_sub(t, q->Y, q->X);
  fe_mul(a, a, t);        /* A = (Y1 - X1)(Y2 - X2) */
  fe_add(b, p->Y, p->X);
  fe_add(t, q->Y, q->X);
  fe_mul(b, b, t);        /* B = (Y1 + X1)(Y2 + X2) */
  fe_mul(c, p->T, q->T);
  fe_mul(c, c, ev_d2);    /* C = T1 2d T2 */
  fe_mul(d, p->Z, q->Z);
  fe_add(d, d, d);        /* D = 2 Z1 Z2 */
  fe_sub(e, b, a);
  fe_sub(f, d, c);
  fe_add(g, d, c);
  fe_add(h, b, a);
  fe_mul(r->X, e, f);
  fe_mul(r->Y, g, h);
  fe_mul(r->T, e, h);
  fe_mul(r->Z, f, g);
}

/* q = p in the (y + x, y - x, 2dxy) form, zi = 1/Z given */
static void ge_to_pre(ge_pre *q, const ge_ext *p, const fe zi) {
  fe x, y;
  fe_mul(x, p->X, zi);
  fe_mul(y, p->Y, zi);
  fe_add(q->ypx, y, x);
  fe_sub(q->ymx, y, x);
  fe_mul(q->xy2d, x, y);
  fe_mul(q->xy2d, q->xy2d, ev_d2);
}

/* ---- the comb ---------------------------------------------------------------
 * A clamped scalar a < 2^255 is written a = sum e_i 16^i, i = 0..63, with
 * signed digits e_i in [-8, 8].  Then
 *   a B = 16 (sum over odd i of e_i 16^(i-1) B) + sum over even i of e_i 16^i B
 * and 16^(i-1) = 256^((i-1)/2), 16^i = 256^(i/2): every term is e_i times
 * a point 256^j B, j = 0..31.  ev_table[j][k] = (k + 1) 256^j B: 32 rows of
 * 8; 64 table additions and 4 doublings in all (a ladder: 255 steps). */
static ge_pre ev_table[32][8];
static pthread_once_t ev_table_once = PTHREAD_ONCE_INIT;

static void ev_table_build(void) {
  /* (p + 3)/8 = 2^252 - 2 and (p - 1)/4 = 2^253 - 5, little-endian */
  uint8_t e38[32], e14[32];
  memset(e38, 0xff, 32);
  e38[0] = 0xfe;
  e38[31] = 0x0f;
  memset(e14, 0xff, 32);
  e14[0] = 0xfb;
  e14[31] = 0x1f;
  fe one, d, t, y, y2, num, den, x, x2, chk;
  fe_set(one, 1);
  /* d = -121665/121666 */
  fe_set(t, 121666);
  fe_invert(t, t);
  fe_mul_small(d, t, 121665);
  fe_neg(d, d);
  fe_add(ev_d2, d, d);
  /* y = 4/5 */
  fe_set(t, 5);
  fe_invert(t, t);
  fe_mul_small(y, t, 4);
  /* x^2 = (y^2 - 1)/(d y^2 + 1); a square root of a (p = 5 mod 8) is
   * a^((p+3)/8) or that times sqrt(-1) = 2^((p-1)/4) */
  fe_sq(y2, y);
  fe_sub(num, y2, one);
  fe_mul(den, d, y2);
  fe_add(den, den, one);
  fe_invert(t, den);
  fe_mul(x2, num, t);
  fe_pow_public(x, x2, e38);
  fe_sq(chk, x);
  if (!fe_equal_public(chk, x2)) {
    fe_set(t, 2);
    fe_pow_public(t, t, e14);
    fe_mul(x, x, t);
    fe_sq(chk, x);
  }
  /* the base point must be on the curve: this is set-up, not secret */
  if (!fe_equal_public(chk, x2)) abort();
  /* x or -x: either gives the same u = (1 + y)/(1 - y) for every multiple
   * (negation keeps y); take the even one, as RFC 7748 4.1's */
  uint8_t xb[32];
  fe_tobytes(xb, x);
  if (xb[0] & 1) fe_neg(x, x);

  /* the 256 points (k + 1) 256^j B in extended coordinates, then all
   * their Z inverted at once (Montgomery's trick: one inversion and three
   * products per point, instead of an inversion each) */
  static ge_ext pts[32][8];
  static fe prefix[256];
  ge_ext p; /* 256^j B */
  fe_copy(p.X, x);
  fe_copy(p.Y, y);
  fe_set(p.Z, 1);
  fe_mul(p.T, x, y);
  for (int j = 0; j < 32; j++) {
    pts[j][0] = p;
    for (int k = 1; k < 8; k++) ge_add(&pts[j][k], &pts[j][k - 1], &p);
    for (int i = 0; i < 8; i++) ge_dbl(&p, &p);
  }
  ge_ext *all = &pts[0][0];
  fe_copy(prefix[0], all[0].Z);
  for (int i = 1; i < 256; i++) fe_mul(prefix[i], prefix[i - 1], all[i].Z);
  fe inv, zi;
  fe_invert(inv, prefix[255]); /* 1/(Z0 ... Z255) */
  for (int i = 255; i > 0; i--) {
    fe_mul(zi, inv, prefix[i - 1]); /* 1/Zi */
    fe_mul(inv, inv, all[i].Z);     /* 1/(Z0 ... Zi-1) */
    ge_to_pre(&ev_table[i / 8][i % 8], &all[i], zi);
  }
  ge_to_pre(&ev_table[0][0], &all[0], inv);
}

/* 1 when a == b, else 0; a, b < 2^31; no branch */
static inline uint64_t ct_eq(uint32_t a, uint32_t b) {
  uint32_t x = a ^ b;
  return (uint64_t)((x - 1) >> 31) & ((uint64_t)(~x >> 31) & 1);
}

/* t = b 256^j B for b in [-8, 8]: every entry of row j is read and the
 * wanted one kept by masks, then negated by masks when b < 0
 * (-(x, y) = (-x, y): swap y+x with y-x and negate 2dxy) */
static void ev_select(ge_pre *t, int j, int8_t b) {
  uint32_t bu = (uint32_t)(int32_t)b;
  uint64_t neg = bu >> 31;
  uint32_t babs = bu - ((0 - (uint32_t)neg) & bu) * 2; /* |b| */
  /* the entry as 15 words, merged two at a time (GCC's vector extension:
   * SSE2 on x86-64, NEON on arm64; the same masks, only wider) */
  typedef uint64_t v2 __attribute__((vector_size(16)));
  v2 w[8] = {{1, 0}, {0, 0}, {0, 1}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}};
  for (uint32_t k = 0; k < 8; k++) {
    uint64_t m1 = 0 - ct_eq(babs, k + 1);
    v2 mask = {m1, m1};
    const uint64_t *src = &ev_table[j][k].ypx[0];
    for (int i = 0; i < 7; i++) {
      v2 x;
      memcpy(&x, src + 2 * i, sizeof(x));
      w[i] ^= mask & (w[i] ^ x);
    }
    v2 x = {src[14], 0};
    w[7] ^= mask & (w[7] ^ x);
  }
  memcpy(t, w, sizeof(ge_pre));
  fe minus;
  fe_cswap(t->ypx, t->ymx, neg);
  fe_neg(minus, t->xy2d);
  fe_cmov(t->xy2d, minus, neg);
}

static void ev_clamp(uint8_t k[32], const uint8_t in[32]) {
  memcpy(k, in, 32);
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
}

/* the comb for one scalar: u = num/den, den = Z - Y (never 0: a clamped
 * scalar is not a multiple of the base point's prime order, so the point
 * is not the neutral element, whose y is 1) */
static void ev_comb(fe num, fe den, const uint8_t priv[32]) {
  uint8_t k[32];
  int8_t e[64];
  ev_clamp(k, priv);
  /* nibbles, then carries so each digit is in [-8, 8): a digit d >= 8
   * becomes d - 16 and adds 1 to the next; the top digit (k[31] < 128,
   * so at most 7 before its carry) stays in [0, 8] */
  for (int i = 0; i < 32; i++) {
    e[2 * i] = (int8_t)(k[i] & 15);
    e[2 * i + 1] = (int8_t)(k[i] >> 4);
  }
  int8_t carry = 0;
  for (int i = 0; i < 63; i++) {
    e[i] = (int8_t)(e[i] + carry);
    carry = (int8_t)((e[i] + 8) >> 4);
    e[i] = (int8_t)(e[i] - carry * 16);
  }
  e[63] = (int8_t)(e[63] + carry);

  ge_ext h;
  ge_pre t;
  fe_set(h.X, 0);
  fe_set(h.Y, 1);
  fe_set(h.Z, 1);
  fe_set(h.T, 0);
  for (int i = 1; i < 64; i += 2) {
    ev_select(&t, i / 2, e[i]);
    ge_madd(&h, &h, &t);
  }
  for (int i = 0; i < 4; i++) ge_dbl(&h, &h);
  for (int i = 0; i < 64; i += 2) {
    ev_select(&t, i / 2, e[i]);
    ge_madd(&h, &h, &t);
  }
  /* u = (1 + y)/(1 - y) = (Z + Y)/(Z - Y) */
  fe_add(num, h.Z, h.Y);
  fe_sub(den, h.Z, h.Y);
  explicit_bzero(k, sizeof(k));
  explicit_bzero(e, sizeof(e));
  explicit_bzero(&h, sizeof(h));
  explicit_bzero(&t, sizeof(t));
}

void ev_x25519_base_n(uint8_t pub[][32], const uint8_t priv[][32], int n) {
  pthread_once(&ev_table_once, ev_table_build);
  if (n <= 0) return;
  if (n > EV_X25519_BASE_MAX) n = EV_X25519_BASE_MAX;
  fe num[EV_X25519_BASE_MAX], den[EV_X25519_BASE_MAX];
  fe prefix[EV_X25519_BASE_MAX], inv, zi;
  for (int i = 0; i < n; i++) ev_comb(num[i], den[i], priv[i]);
  /* Montgomery's trick: prefix[i] = den[0] ... den[i], one inversion of
   * the whole product, then each 1/den[i] from it with two products */
  fe_copy(prefix[0], den[0]);
  for (int i = 1; i < n; i++) fe_mul(prefix[i], prefix[i - 1], den[i]);
  fe_invert(inv, prefix[n - 1]);
  for (int i = n - 1; i > 0; i--) {
    fe_mul(zi, inv, prefix[i - 1]); /* 1/den[i] */
    fe_mul(inv, inv, den[i]);       /* 1/(den[0] ... den[i-1]) */
    fe_mul(zi, num[i], zi);
    fe_tobytes(pub[i], zi);
  }
  fe_mul(zi, num[0], inv);
  fe_tobytes(pub[0], zi);
  explicit_bzero(num, sizeof(num));
  explicit_bzero(den, sizeof(den));
  explicit_bzero(prefix, sizeof(prefix));
  explicit_bzero(inv, sizeof(inv));
  explicit_bzero(zi, sizeof(zi));
}

void ev_x25519_base(uint8_t pub[32], const uint8_t priv[32]) {
  ev_x25519_base_n((uint8_t(*)[32])pub, (const uint8_t(*)[32])priv, 1);
}

/* ---- the Montgomery ladder (RFC 7748 5) ------------------------------------ */
int ev_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32]) {
  uint8_t k[32];
  ev_clamp(k, scalar);
  fe x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb;
  fe_frombytes(x1, u);
  fe_set(x2, 1);
  fe_set(z2, 0);
  fe_copy(x3, x1);
  fe_set(z3, 1);
  uint64_t swap = 0;
  for (int i = 254; i >= 0; i--) {
    uint64_t bit = (k[i >> 3] >> (i & 7)) & 1;
    swap ^= bit;
    fe_cswap(x2, x3, swap);
    fe_cswap(z2, z3, swap);
    swap = bit;
    fe_add(a, x2, z2);
    fe_sq(aa, a);
    fe_sub(b, x2, z2);
    fe_sq(bb, b);
    fe_sub(e, aa, bb);
    fe_add(c, x3, z3);
    fe_sub(d, x3, z3);
    fe_mul(da, d, a);
    fe_mul(cb, c, b);
    fe_add(x3, da, cb);
    fe_sq(x3, x3);
    fe_sub(z3, da, cb);
    fe_sq(z3, z3);
    fe_mul(z3, z3, x1);
    fe_mul(x2, aa, bb);
    fe_mul_small(z2, e, 121665); /* a24 = (486662 - 2)/4 */
    fe_add(z2, z2, aa);
    fe_mul(z2, z2, e);
  }
  fe_cswap(x2, x3, swap);
  fe_cswap(z2, z3, swap);
  fe_invert(z2, z2);
  fe_mul(x2, x2, z2);
  fe_tobytes(out, x2);
  /* all zeros: or-fold, then 1 when the fold is 0, without a branch */
  uint32_t acc = 0;
  for (int i = 0; i < 32; i++) acc |= out[i];
  int zero = (int)((acc - 1) >> 31);
  explicit_bzero(k, sizeof(k));
  explicit_bzero(x2, sizeof(fe));
  explicit_bzero(z2, sizeof(fe));
  explicit_bzero(x3, sizeof(fe));
  explicit_bzero(z3, sizeof(fe));
  return -zero;
}
