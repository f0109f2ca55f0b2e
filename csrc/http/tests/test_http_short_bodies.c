/*
 * test_http_short_bodies.c - bodies appended in pieces (mtev_http_response_
 * append) and sent with their head in one write, pipelined: every length
 * from 0 to past the response's inline body store (1 KiB, then blocks),
 * in pieces of 1, 3, 7, 8, 16, 17, 100 bytes and all at once, classic and
 * aco rules, many requests written at once on one keep-alive connection.
 * Each answer must be the one asked for, in order, byte for byte (the
 * body's pattern starts at an offset that the request names, so an answer
 * that came from another request or a copy from the wrong place shows).
 */
#include "http_test.h"

/* /[a]pc/<n>/<k>/<o>: n bytes of 'a' + (o + i) % 26 appended k at a time */
static int h_pc(mtev_http_rest_closure_t *restc, int npats, char **pats) {
  mtev_http_session_ctx *ctx = restc->http_ctx;
  T_CHECK(npats == 3);
  size_t n = strtoul(pats[0], NULL, 10), k = strtoul(pats[1], NULL, 10),
         o = strtoul(pats[2], NULL, 10);
  char *b = malloc(n + 1);
  T_CHECK(b != NULL && k > 0);
  for (size_t i = 0; i < n; i++) b[i] = (char)('a' + (o + i) % 26);
  mtev_http_response_ok(ctx, "text/plain");
  for (size_t i = 0; i < n; i += k)
    T_CHECK(mtev_http_response_append(ctx, b + i, n - i < k ? n - i : k));
  free(b);
  mtev_http_response_end(ctx);
  return 0;
}

static const size_t lens[] = {0,  1,  2,  3,  4,  5,  7,  8,  9,   15,   16,   17,
                              31, 32, 33, 63, 64, 65, 100, 1000, 1023, 1024, 1025, 1100,
                              2047, 2048, 2049, 4096};
static const size_t ks[] = {1, 3, 7, 8, 16, 17, 100, 1 << 20};
#define NLENS (sizeof(lens) / sizeof(lens[0]))
#define NKS (sizeof(ks) / sizeof(ks[0]))

static void test_pipelined(void) {
  int port = ht_start(1);
  mtev_rest_mountpoint_t *m =
      mtev_http_rest_new_rule("GET", "/", "^apc/([0-9]+)/([0-9]+)/([0-9]+)$", h_pc);
  mtev_rest_mountpoint_set_aco(m, mtev_true);
  T_CHECK(mtev_http_rest_new_rule("GET", "/", "^pc/([0-9]+)/([0-9]+)/([0-9]+)$", h_pc));
  int rounds = (int)t_scale(20, 10);
  for (int round = 0; round < rounds; round++)
    for (int a = 0; a < 3; a++) {
      /* a: 0 classic, 1 aco, 2 the two alternating */
      hc_t *c = hc_open(port);
      size_t cap = NLENS * NKS * 96, used = 0;
      char *all = malloc(cap);
      T_CHECK(all != NULL);
      size_t idx = 0;
      for (size_t li = 0; li < NLENS; li++)
        for (size_t ki = 0; ki < NKS; ki++, idx++) {
          int aco = a == 2 ? (int)(idx & 1) : a;
          used += (size_t)snprintf(all + used, cap - used,
                                   "GET /%spc/%zu/%zu/%zu HTTP/1.1\r\nHost: x\r\n\r\n",
                                   aco ? "a" : "", lens[li], ks[ki], idx);
        }
      hc_send(c, all, used);
      free(all);
      idx = 0;
      for (size_t li = 0; li < NLENS; li++)
        for (size_t ki = 0; ki < NKS; ki++, idx++) {
          hc_resp_t r;
          T_EQ(hc_read_resp(c, &r, 0), 0);
          T_EQ(r.status, 200);
          T_EQ(r.blen, lens[li]);
          size_t bad = SIZE_MAX;
          for (size_t i = 0; i < lens[li] && bad == SIZE_MAX; i++)
            if (r.body[i] != (char)('a' + (idx + i) % 26)) bad = i;
          T_CHECKF(bad == SIZE_MAX,
                   "mode %d, answer %zu (%zu bytes in pieces of %zu): byte %zu differs",
                   a, idx, lens[li], ks[ki], bad);
          hc_resp_free(&r);
        }
      hc_close(c);
    }
  ht_stop();
}

T_MAIN({"pipelined", test_pipelined})
