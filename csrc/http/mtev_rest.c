/*
 * mtev_rest.c - REST routing (see mtev_rest.h).
 *
 * The routing table is read on every request by every loop and written
 * rarely, so readers take no lock: the array of bases is an immutable
 * snapshot replaced (copy, then an atomic pointer store) when a base is
 * added, and rules are appended to a base's list with release stores.
 * Nothing is freed while the process serves (old snapshots wait for
 * mtev_http_rest_fini).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "mtev_rest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventer_SSL_fd_opset.h"
#include "http_impl.h"
#include "mtev_conf.h"

/* How a rule's expression is matched (see ev_rule_classify). */
enum {
  EV_MATCH_PCRE = 0, /* PCRE2, after checking the literal prefix */
  EV_MATCH_EXACT,    /* "^lit$": the subject is lit (or lit and a newline) */
  EV_MATCH_PREFIX    /* "^lit": the subject starts with lit */
};

struct rest_url_dispatcher {
  struct rest_url_dispatcher *next; /* in its base, registration order */
  struct rest_url_dispatcher *all;  /* every rule, for fini */
  char *method;
  size_t mlen;
  char *expression;
  pcre2_code *re;
  int jit;                          /* JIT-compiled */
  int kind;                         /* EV_MATCH_* */
  char *lit;                        /* the literal (prefix) of the expression */
  size_t litlen;
  rest_request_handler handler;
  rest_authorize_func_t auth;
  void *closure;
  eventer_pool_t *pool;
  int aco;
};

typedef struct {
  char *base;
  size_t blen;
  struct rest_url_dispatcher *rules, *last;
} ev_rest_base_t;

/* A snapshot of the bases.  by_byte[c] lists, longest first, the bases
 * longer than "/" whose second byte is c (every base starts with '/'), so
 * a path is compared only with the bases that can prefix it; root is the
 * base "/" when there is one. */
typedef struct ev_rest_table {
  struct ev_rest_table *retired; /* older snapshots, freed at fini */
  int n;
  ev_rest_base_t *root;
  uint32_t by_byte_off[257];   /* bucket c is idx[off[c] .. off[c + 1]) */
  ev_rest_base_t **idx;        /* points into b[] after the n bases */
  ev_rest_base_t *b[];         /* longest base first, then the buckets */
} ev_rest_table_t;

static pthread_mutex_t ev_rest_lock = PTHREAD_MUTEX_INITIALIZER;
static ev_rest_table_t *ev_rest_tab; /* atomic */
static struct rest_url_dispatcher *ev_rest_all;
static int ev_rest_named;

/* Changes whenever routing could answer differently: a rule or a base
 * registered, the table freed (a cached rule pointer is only good for the
 * generation it was found in). */
static uint64_t ev_rest_gen = 1; /* atomic */

/* The route of the connection's last request, when it can be reused: a
 * rule of the request's own method whose expression matched without
 * captures.  Rules are only ever appended to a base and bases only added
 * (each bumps ev_rest_gen), so while the generation holds, the same
 * method and path find the same rule first. */
#define EV_ROUTE_KEY 64
typedef struct {
  uint64_t gen;  /* 0: empty */
  struct rest_url_dispatcher *rule;
  uint32_t mlen, plen;
  char key[EV_ROUTE_KEY]; /* method, a NUL, then path */
} ev_route_cache_t;

/* Per connection: the closure handlers see, and what routing decided. */
typedef struct {
  mtev_http_rest_closure_t restc; /* first: the acceptor ctx points here */
  uint64_t seq;                   /* the request routed */
  struct rest_url_dispatcher *rule;
  ev_route_cache_t last;
} ev_rest_conn_t;

/* ---- match data, one per thread ------------------------------------------------- */

#define EV_REST_MAX_CAPS 32
static pthread_key_t ev_md_key;
static pthread_once_t ev_md_once = PTHREAD_ONCE_INIT;
static __thread pcre2_match_data *ev_md;

static void ev_md_free(void *p) { pcre2_match_data_free(p); }
static void ev_md_key_make(void) { pthread_key_create(&ev_md_key, ev_md_free); }

static pcre2_match_data *ev_match_data(void) {
  if (!ev_md) {
    pthread_once(&ev_md_once, ev_md_key_make);
    ev_md = pcre2_match_data_create(EV_REST_MAX_CAPS, NULL);
    if (ev_md) pthread_setspecific(ev_md_key, ev_md);
  }
  return ev_md;
}

/* a[0..n) == b[0..n).  Short spans (methods, literals) by overlapping
 * word loads inside both spans, no call. */
static inline int ev_memeq(const char *a, const char *b, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, a, 8);
    memcpy(&b0, b, 8);
    memcpy(&a1, a + n - 8, 8);
    memcpy(&b1, b + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  if (n >= 4 && n < 8) {
    uint32_t a0, a1, b0, b1;
    memcpy(&a0, a, 4);
    memcpy(&b0, b, 4);
    memcpy(&a1, a + n - 4, 4);
    memcpy(&b1, b + n - 4, 4);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  if (n < 4) /* bytes 0, n/2 and n - 1 cover all of 1 to 3 */
    return n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]);
  return memcmp(a, b, n) == 0;
}

/* 1 when the request's method and path are the key of lc (its gen is
 * the caller's to check).  The engine NUL-terminates the method in place,
 * so an origin-form request line's method and path are one span of the
 * input, "GET\0/hello", compared with the key at once (two spans cost
 * twice the tests). */
static inline int ev_route_key_eq(const ev_route_cache_t *lc, const char *method,
                                  size_t mlen, const char *path, size_t plen) {
  if (lc->mlen != mlen || lc->plen != plen) return 0;
  if (path == method + mlen + 1) return ev_memeq(lc->key, method, mlen + 1 + plen);
  return ev_memeq(lc->key, method, mlen) && ev_memeq(lc->key + mlen + 1, path, plen);
}

/* Number of captures + 1 when rule matches subject, else -1.  A literal
 * expression is decided without PCRE2 (the same answer: no captures, a
 * match at the start); other expressions are tried only when the subject
 * starts with their literal prefix, which every match must. */
static int ev_rule_match(struct rest_url_dispatcher *r, const char *subj,
                         size_t len, pcre2_match_data *md) {
  size_t ll = r->litlen;
  if (ll && (len < ll || !ev_memeq(subj, r->lit, ll))) return -1;
  if (r->kind == EV_MATCH_PREFIX) return 1;
  if (r->kind == EV_MATCH_EXACT) {
    if (len == ll) return 1;
    /* '$' also matches before a newline that ends the subject: a byte or
     * two past lit are left to PCRE2, which knows its newline setting */
    if (len > ll + 2) return -1;
  }
  int rc = r->jit ? pcre2_jit_match(r->re, (PCRE2_SPTR)subj, len, 0, 0, md, NULL)
                  : pcre2_match(r->re, (PCRE2_SPTR)subj, len, 0, 0, md, NULL);
  if (rc == 0) rc = EV_REST_MAX_CAPS; /* more groups than we report */
  return rc > 0 ? rc : -1;
}

/* ---- the ACL (<rest><acl>) ------------------------------------------------------------- */

/* What an <acl> or a <rule> selects: every selector it has must match
 * (url, cn and method are PCRE2 expressions, ip a list of addresses or
 * CIDR blocks); one without selectors matches everything. */
typedef struct {
  int family; /* AF_INET or AF_INET6 */
  int bits;
  uint8_t a[16];
} ev_acl_net_t;

typedef struct {
  pcre2_code *url, *cn, *method;
  ev_acl_net_t *nets;
  int nnets;
} ev_acl_sel_t;

typedef struct ev_acl_rule {
  struct ev_acl_rule *next;
  int allow;
  ev_acl_sel_t sel;
} ev_acl_rule_t;

typedef struct ev_acl {
  struct ev_acl *next;
  int allow; /* when none of its rules matches */
  ev_acl_sel_t sel;
  ev_acl_rule_t *rules;
} ev_acl_t;

typedef struct ev_acl_set {
  struct ev_acl_set *retired; /* older sets, freed at fini */
  ev_acl_t *acls;             /* document order */
} ev_acl_set_t;

static ev_acl_set_t *ev_rest_acl; /* atomic; NULL: no ACL configured */

static void ev_acl_sel_free(ev_acl_sel_t *m) {
  pcre2_code_free(m->url);
  pcre2_code_free(m->cn);
  pcre2_code_free(m->method);
  free(m->nets);
}

static void ev_acl_set_free(ev_acl_set_t *set) {
  while (set) {
    ev_acl_set_t *older = set->retired;
    while (set->acls) {
      ev_acl_t *a = set->acls;
      set->acls = a->next;
      while (a->rules) {
        ev_acl_rule_t *r = a->rules;
        a->rules = r->next;
        ev_acl_sel_free(&r->sel);
        free(r);
      }
      ev_acl_sel_free(&a->sel);
      free(a);
    }
    free(set);
    set = older;
  }
}

/* One address or CIDR block ("10.0.0.0/8", "::1", "127.0.0.1"). */
static int ev_acl_parse_net(const char *txt, size_t len, ev_acl_net_t *n) {
  char buf[64];
  if (len == 0 || len >= sizeof(buf)) return -1;
  memcpy(buf, txt, len);
  buf[len] = 0;
  char *slash = strchr(buf, '/');
  int bits = -1;
  if (slash) {
    *slash = 0;
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (slash[1] < '0' || slash[1] > '9' || *end || b < 0 || b > 128) return -1;
    bits = (int)b;
  }
  memset(n, 0, sizeof(*n));
  if (inet_pton(AF_INET, buf, n->a) == 1) {
    n->family = AF_INET;
    if (bits > 32) return -1;
    n->bits = bits < 0 ? 32 : bits;
  } else if (inet_pton(AF_INET6, buf, n->a) == 1) {
    n->family = AF_INET6;
    n->bits = bits < 0 ? 128 : bits;
  } else {
    return -1;
  }
  return 0;
}

static int ev_acl_net_has(const ev_acl_net_t *n, const uint8_t *a, int family) {
  if (n->family != family) return 0;
  int full = n->bits / 8, rem = n->bits % 8;
  if (memcmp(n->a, a, (size_t)full)) return 0;
  if (rem && ((n->a[full] ^ a[full]) & (0xff << (8 - rem)) & 0xff)) return 0;
  return 1;
}

/* Reads the selectors of one element; -1 with the reason in err. */
static int ev_acl_sel_load(mtev_conf_section_t sec, ev_acl_sel_t *m, char *err,
                           size_t errlen) {
  static const char *const names[] = {"url", "cn", "method"};
  pcre2_code **res[] = {&m->url, &m->cn, &m->method};
  char loc[256], path[16], buf[1024];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "@%s", names[i]);
    if (!mtev_conf_get_stringbuf(sec, path, buf, sizeof(buf))) continue;
    int ec;
    PCRE2_SIZE off;
    *res[i] = pcre2_compile((PCRE2_SPTR)buf, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
    if (!*res[i]) {
      PCRE2_UCHAR msg[160];
      pcre2_get_error_message(ec, msg, sizeof(msg));
      snprintf(err, errlen, "%s: rest acl %s=\"%s\": at offset %zu: %s",
               mtev_conf_section_location(sec, loc, sizeof(loc)), names[i], buf,
               (size_t)off, (char *)msg);
      return -1;
    }
    pcre2_jit_compile(*res[i], PCRE2_JIT_COMPLETE);
  }
  if (mtev_conf_get_stringbuf(sec, "@ip", buf, sizeof(buf))) {
    for (const char *p = buf; *p;) {
      while (*p == ' ' || *p == ',') p++;
      if (!*p) break;
      size_t l = strcspn(p, " ,");
      ev_acl_net_t n;
      ev_acl_net_t *nn = ev_acl_parse_net(p, l, &n) == 0
                             ? realloc(m->nets, (size_t)(m->nnets + 1) * sizeof(n))
                             : NULL;
      if (!nn) {
        snprintf(err, errlen, "%s: rest acl ip=\"%s\": \"%.*s\" is not an "
                 "address or CIDR block",
                 mtev_conf_section_location(sec, loc, sizeof(loc)), buf, (int)l, p);
        return -1;
      }
      m->nets = nn;
      m->nets[m->nnets++] = n;
      p += l;
    }
    if (m->nnets == 0) {
      snprintf(err, errlen, "%s: rest acl ip=\"\": no address",
               mtev_conf_section_location(sec, loc, sizeof(loc)));
      return -1;
    }
  }
  return 0;
}

/* type="allow" or "deny" (absent: deny). */
static int ev_acl_type(mtev_conf_section_t sec, int *allow, char *err,
                       size_t errlen) {
  char buf[32], loc[256];
  *allow = 0;
  if (!mtev_conf_get_stringbuf(sec, "@type", buf, sizeof(buf))) return 0;
  if (!strcmp(buf, "allow")) *allow = 1;
  else if (strcmp(buf, "deny")) {
    snprintf(err, errlen, "%s: rest acl type=\"%s\": not \"allow\" or \"deny\"",
             mtev_conf_section_location(sec, loc, sizeof(loc)), buf);
    return -1;
  }
  return 0;
}

int mtev_http_rest_load_rules_ex(char *err, size_t errlen) {
  char dummy[8];
  if (!err) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = 0;
  int cnt = 0;
  mtev_conf_section_t *secs = mtev_conf_get_sections(MTEV_CONF_ROOT, "//rest//acl", &cnt);
  ev_acl_set_t *set = NULL;
  if (cnt > 0 && !(set = calloc(1, sizeof(*set)))) goto nomem;
  ev_acl_t **tail = set ? &set->acls : NULL;
  for (int i = 0; i < cnt; i++) {
    ev_acl_t *a = calloc(1, sizeof(*a));
    if (!a) goto nomem;
    *tail = a;
    tail = &a->next;
    if (ev_acl_type(secs[i], &a->allow, err, errlen) ||
        ev_acl_sel_load(secs[i], &a->sel, err, errlen))
      goto bad;
    int rcnt = 0;
    mtev_conf_section_t *rs = mtev_conf_get_sections(secs[i], "rule", &rcnt);
    ev_acl_rule_t **rtail = &a->rules;
    for (int j = 0; j < rcnt; j++) {
      ev_acl_rule_t *r = calloc(1, sizeof(*r));
      if (!r) {
        mtev_conf_release_sections(rs, rcnt);
        goto nomem;
      }
      *rtail = r;
      rtail = &r->next;
      if (ev_acl_type(rs[j], &r->allow, err, errlen) ||
          ev_acl_sel_load(rs[j], &r->sel, err, errlen)) {
        mtev_conf_release_sections(rs, rcnt);
        goto bad;
      }
    }
    mtev_conf_release_sections(rs, rcnt);
  }
  mtev_conf_release_sections(secs, cnt);
  pthread_mutex_lock(&ev_rest_lock);
  ev_acl_set_t *old = __atomic_load_n(&ev_rest_acl, __ATOMIC_ACQUIRE);
  if (set) {
    set->retired = old; /* requests being checked may still read it */
    __atomic_store_n(&ev_rest_acl, set, __ATOMIC_RELEASE);
  } else if (old) {
    /* no ACL any more: keep the old sets for fini, allow everything */
    ev_acl_set_t *empty = calloc(1, sizeof(*empty));
    if (!empty) {
      pthread_mutex_unlock(&ev_rest_lock);
      goto nomem;
    }
    empty->retired = old;
    __atomic_store_n(&ev_rest_acl, empty, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&ev_rest_lock);
  mtevL(mtev_debug, "rest: %d acl stanza%s\n", cnt, cnt == 1 ? "" : "s");
  return 0;
nomem:
  snprintf(err, errlen, "rest acl: out of memory");
  errno = ENOMEM;
  goto fail;
bad:
  errno = EINVAL;
fail:
  mtev_conf_release_sections(secs, cnt);
  ev_acl_set_free(set);
  mtevL(mtev_error, "%s\n", err);
  return -1;
}

void mtev_http_rest_load_rules(void) { (void)mtev_http_rest_load_rules_ex(NULL, 0); }

static int ev_acl_re(pcre2_code *re, const char *s, pcre2_match_data *md) {
  return !re || pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) >= 0;
}

static int ev_acl_sel_match(const ev_acl_sel_t *m, mtev_http_rest_closure_t *restc,
                            const char *uri, const char *method,
                            pcre2_match_data *md) {
  if (!ev_acl_re(m->url, uri, md) || !ev_acl_re(m->method, method, md) ||
      !ev_acl_re(m->cn, restc->remote_cn ? restc->remote_cn : "", md))
    return 0;
  if (!m->nnets) return 1;
  struct sockaddr *sa = mtev_acceptor_closure_remote(restc->ac);
  if (!sa) return 0;
  const uint8_t *a;
  int fam = sa->sa_family;
  if (fam == AF_INET) {
    a = (const uint8_t *)&((struct sockaddr_in *)(void *)sa)->sin_addr;
  } else if (fam == AF_INET6) {
    const struct in6_addr *a6 = &((struct sockaddr_in6 *)(void *)sa)->sin6_addr;
    a = a6->s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) { /* ::ffff:a.b.c.d is a.b.c.d */
      a += 12;
      fam = AF_INET;
    }
  } else {
    return 0; /* AF_UNIX: no address to match */
  }
  for (int i = 0; i < m->nnets; i++)
    if (ev_acl_net_has(&m->nets[i], a, fam)) return 1;
  return 0;
}

/* libmtev's name for the ACL check (usable as a rule's auth function). */
mtev_boolean mtev_http_rest_client_cert_auth(mtev_http_rest_closure_t *restc,
                                             int npats, char **pats) {
  (void)npats, (void)pats;
  ev_acl_set_t *set = __atomic_load_n(&ev_rest_acl, __ATOMIC_ACQUIRE);
  if (!set || !set->acls) return mtev_true;
  if (!restc || !restc->http_ctx) return mtev_false;
  mtev_http_request *req = mtev_http_session_request(restc->http_ctx);
  pcre2_match_data *md = ev_match_data();
  if (!req || !md) return mtev_false;
  const char *uri = mtev_http_request_uri_str(req);
  const char *method = mtev_http_request_method_str(req);
  for (ev_acl_t *a = set->acls; a; a = a->next) {
    if (!ev_acl_sel_match(&a->sel, restc, uri, method, md)) continue;
    for (ev_acl_rule_t *r = a->rules; r; r = r->next)
      if (ev_acl_sel_match(&r->sel, restc, uri, method, md))
        return r->allow ? mtev_true : mtev_false;
    return a->allow ? mtev_true : mtev_false;
  }
  return mtev_false;
}

/* ---- registration --------------------------------------------------------------------- */

/* Bytes that stand for themselves in a PCRE2 pattern (compiled with no
 * options): no metacharacter, no whitespace or '#' (which (?x) would
 * change, though (?x) itself needs a '('), no bytes outside ASCII. */
static int ev_re_literal_byte(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return 0;
  return strchr("\\^$.[]|()?*+{}#", c) == NULL;
}

/* Finds what can be decided without PCRE2: "^lit$" is EXACT, "^lit" is
 * PREFIX; any other expression starting "^lit" keeps lit as a prefix
 * every match must have (less its last byte when a quantifier follows
 * it; none when the expression has a '|', whose branches need not start
 * with lit). */
static int ev_rule_classify(struct rest_url_dispatcher *r) {
  const char *e = r->expression;
  r->kind = EV_MATCH_PCRE;
  r->litlen = 0;
  if (e[0] != '^') return 0;
  size_t n = 1;
  while (ev_re_literal_byte((unsigned char)e[n])) n++;
  size_t ll = n - 1;
  if (e[n] == 0) {
    r->kind = EV_MATCH_PREFIX;
  } else if (e[n] == '$' && e[n + 1] == 0) {
    r->kind = EV_MATCH_EXACT;
  } else {
    if (strchr(e, '|')) ll = 0;
    else if (ll && strchr("?*+{", e[n])) ll--;
  }
  if (ll) {
    r->lit = malloc(ll);
    if (!r->lit) return -1;
    memcpy(r->lit, e + 1, ll);
  }
  r->litlen = ll;
  return 0;
}

static void ev_rule_free(struct rest_url_dispatcher *r) {
  free(r->method);
  free(r->expression);
  free(r->lit);
  pcre2_code_free(r->re);
  free(r);
}

void mtev_http_rest_init(void) {
  pthread_mutex_lock(&ev_rest_lock);
  if (!ev_rest_named) {
    eventer_name_callback("http_rest_api", mtev_http_rest_handler);
    eventer_name_callback("control_dispatch", mtev_control_dispatch);
    /* TLS listeners negotiate HTTP/1.1 by ALPN (an <sslconfig> alpn
     * list still decides for its listener), as libmtev's engine does */
    eventer_ssl_alpn_register("http/1.1", NULL);
    ev_rest_named = 1;
  }
  pthread_mutex_unlock(&ev_rest_lock);
  /* the ACL of the configuration loaded (if any), as libmtev does */
  mtev_http_rest_load_rules();
}

void mtev_http_rest_fini(void) {
  pthread_mutex_lock(&ev_rest_lock);
  ev_rest_table_t *t = __atomic_load_n(&ev_rest_tab, __ATOMIC_ACQUIRE);
  __atomic_store_n(&ev_rest_tab, NULL, __ATOMIC_RELEASE);
  __atomic_add_fetch(&ev_rest_gen, 1, __ATOMIC_RELEASE);
  if (t) {
    for (int i = 0; i < t->n; i++) {
      free(t->b[i]->base);
      free(t->b[i]);
    }
  }
  while (t) {
    ev_rest_table_t *o = t->retired;
    free(t);
    t = o;
  }
  while (ev_rest_all) {
    struct rest_url_dispatcher *r = ev_rest_all;
    ev_rest_all = r->all;
    ev_rule_free(r);
  }
  ev_acl_set_free(__atomic_exchange_n(&ev_rest_acl, NULL, __ATOMIC_ACQ_REL));
  pthread_mutex_unlock(&ev_rest_lock);
}

/* Fills nt (room for 2 * (n + 1) pointers) with t's bases and b, longest
 * first, and the buckets by second byte.  1, or 0 when there are too
 * many bases. */
static int ev_rest_table_fill(ev_rest_table_t *nt, ev_rest_table_t *t,
                              ev_rest_base_t *b) {
  int n = t ? t->n : 0;
  if (n >= INT32_MAX / 2 - 1) return 0;
  int j = 0, placed = 0;
  for (int i = 0; i < n; i++) {
    if (!placed && t->b[i]->blen < b->blen) {
      nt->b[j++] = b;
      placed = 1;
    }
    nt->b[j++] = t->b[i];
  }
  if (!placed) nt->b[j++] = b;
  nt->n = j;
  nt->retired = t;
  nt->root = NULL;
  nt->idx = nt->b + j;
  /* counting sort by second byte, stable: each bucket stays longest first */
  uint32_t cnt[257] = {0};
  for (int i = 0; i < j; i++) {
    if (nt->b[i]->blen == 1)
      nt->root = nt->b[i];
    else
      cnt[(unsigned char)nt->b[i]->base[1] + 1]++;
  }
  for (int c = 1; c <= 256; c++) cnt[c] += cnt[c - 1];
  memcpy(nt->by_byte_off, cnt, sizeof(cnt));
  for (int i = 0; i < j; i++)
    if (nt->b[i]->blen > 1) nt->idx[cnt[(unsigned char)nt->b[i]->base[1]]++] = nt->b[i];
  return 1;
}

/* The longest base that prefixes path, or NULL. */
static ev_rest_base_t *ev_rest_base_find(ev_rest_table_t *t, const char *path,
                                         size_t plen) {
  if (!t || plen == 0 || path[0] != '/') return NULL;
  if (plen > 1) {
    unsigned c = (unsigned char)path[1];
    for (uint32_t k = t->by_byte_off[c]; k < t->by_byte_off[c + 1]; k++) {
      ev_rest_base_t *b = t->idx[k];
      if (b->blen <= plen && ev_memeq(path, b->base, b->blen)) return b;
    }
  }
  return t->root;
}

static int ev_valid_method(const char *m) {
  if (!*m) return 0;
  for (; *m; m++) {
    unsigned char c = (unsigned char)*m;
    if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c)) return 0;
  }
  return 1;
}

mtev_rest_mountpoint_t *mtev_http_rest_new_rule_auth_closure(
    const char *method, const char *base, const char *expression,
    rest_request_handler f, rest_websocket_message_handler wf,
    const char *websocket_protocol, rest_authorize_func_t auth,
    void *closure) {
  if (wf || websocket_protocol) {
    errno = ENOTSUP;
    return NULL;
  }
  size_t blen = base ? strlen(base) : 0;
  if (!method || !ev_valid_method(method) || !expression || !f || blen == 0 ||
      base[0] != '/' || base[blen - 1] != '/') {
    mtevL(mtev_error, "rest: a rule needs a method, a base that starts and "
          "ends with '/', an expression and a handler\n");
    errno = EINVAL;
    return NULL;
  }
  int err;
  PCRE2_SIZE off;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)expression, PCRE2_ZERO_TERMINATED,
                                 0, &err, &off, NULL);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof(msg));
    mtevL(mtev_error, "rest: expression %s%s at offset %zu: %s\n", base,
          expression, (size_t)off, (char *)msg);
    errno = EINVAL;
    return NULL;
  }
  struct rest_url_dispatcher *r = calloc(1, sizeof(*r));
  if (!r) {
    pcre2_code_free(re);
    errno = ENOMEM;
    return NULL;
  }
  r->re = re;
  r->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  r->method = strdup(method);
  r->mlen = strlen(method);
  r->expression = strdup(expression);
  r->handler = f;
  r->auth = auth;
  r->closure = closure;
  if (!r->method || !r->expression || ev_rule_classify(r) != 0) {
    ev_rule_free(r);
    errno = ENOMEM;
    return NULL;
  }

  pthread_mutex_lock(&ev_rest_lock);
  ev_rest_table_t *t = __atomic_load_n(&ev_rest_tab, __ATOMIC_ACQUIRE);
  ev_rest_base_t *b = NULL;
  for (int i = 0; t && i < t->n; i++)
    if (t->b[i]->blen == blen && !memcmp(t->b[i]->base, base, blen)) b = t->b[i];
  if (!b) {
    b = calloc(1, sizeof(*b));
    int n = t ? t->n : 0;
    ev_rest_table_t *nt = malloc(sizeof(*nt) + (size_t)(n + 1) * 2 * sizeof(nt->b[0]));
    if (!b || !nt || !(b->base = strdup(base))) {
      pthread_mutex_unlock(&ev_rest_lock);
      free(b ? b->base : NULL);
      free(b);
      free(nt);
      ev_rule_free(r);
      errno = ENOMEM;
      return NULL;
    }
    b->blen = blen;
    if (!ev_rest_table_fill(nt, t, b)) {
      pthread_mutex_unlock(&ev_rest_lock);
      free(nt);
      free(b->base);
      free(b);
      ev_rule_free(r);
      errno = ENOMEM;
      return NULL;
    }
    __atomic_store_n(&ev_rest_tab, nt, __ATOMIC_RELEASE);
  }
  /* publish the rule fully built, then link it */
  if (b->last)
    __atomic_store_n(&b->last->next, r, __ATOMIC_RELEASE);
  else
    __atomic_store_n(&b->rules, r, __ATOMIC_RELEASE);
  b->last = r;
  r->all = ev_rest_all;
  ev_rest_all = r;
  __atomic_add_fetch(&ev_rest_gen, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&ev_rest_lock);
  return r;
}

mtev_rest_mountpoint_t *mtev_http_rest_new_rule(const char *method,
                                                const char *base,
                                                const char *expression,
                                                rest_request_handler f) {
  return mtev_http_rest_new_rule_auth_closure(method, base, expression, f,
                                              NULL, NULL, NULL, NULL);
}

int mtev_http_rest_register_auth_closure(const char *method, const char *base,
                                         const char *expression,
                                         rest_request_handler f,
                                         rest_websocket_message_handler wf,
                                         const char *websocket_protocol,
                                         rest_authorize_func_t auth,
                                         void *closure) {
  return mtev_http_rest_new_rule_auth_closure(method, base, expression, f, wf,
                                              websocket_protocol, auth,
                                              closure)
             ? 0
             : -1;
}
int mtev_http_rest_register(const char *method, const char *base,
                            const char *expression, rest_request_handler f) {
  return mtev_http_rest_register_auth_closure(method, base, expression, f,
                                              NULL, NULL, NULL, NULL);
}
int mtev_http_rest_register_closure(const char *method, const char *base,
                                    const char *expression,
                                    rest_request_handler f, void *closure) {
  return mtev_http_rest_register_auth_closure(method, base, expression, f,
                                              NULL, NULL, NULL, closure);
}
int mtev_http_rest_register_auth(const char *method, const char *base,
                                 const char *expression,
                                 rest_request_handler f,
                                 rest_authorize_func_t auth) {
  return mtev_http_rest_register_auth_closure(method, base, expression, f,
                                              NULL, NULL, auth, NULL);
}

void mtev_rest_mountpoint_set_handler(mtev_rest_mountpoint_t *mp,
                                      rest_request_handler h) {
  if (mp && h) __atomic_store_n(&mp->handler, h, __ATOMIC_RELAXED);
}
void mtev_rest_mountpoint_set_auth(mtev_rest_mountpoint_t *mp,
                                   rest_authorize_func_t h) {
  if (mp) __atomic_store_n(&mp->auth, h, __ATOMIC_RELAXED);
}
void mtev_rest_mountpoint_set_closure(mtev_rest_mountpoint_t *mp, void *c) {
  if (mp) __atomic_store_n(&mp->closure, c, __ATOMIC_RELAXED);
}
void mtev_rest_mountpoint_set_eventer_pool(mtev_rest_mountpoint_t *mp,
                                           eventer_pool_t *pool) {
  if (mp) __atomic_store_n(&mp->pool, pool, __ATOMIC_RELAXED);
}
void mtev_rest_mountpoint_set_aco(mtev_rest_mountpoint_t *mp,
                                  mtev_boolean enabled) {
  if (mp) __atomic_store_n(&mp->aco, enabled ? 1 : 0, __ATOMIC_RELAXED);
}

/* ---- per-request state ------------------------------------------------------------------- */

/* mtev_http_rest_clean_request's body, inline in the dispatch and the
 * probe (a request that captured nothing and set no call closure: two
 * tests and four stores). */
static inline __attribute__((always_inline)) void
ev_rest_clean(mtev_http_rest_closure_t *restc) {
  if (restc->params) { /* one block: pointers, then the strings */
    free(restc->params);
    restc->params = NULL;
  }
  restc->nparams = 0;
  if (restc->call_closure_free) restc->call_closure_free(restc->call_closure);
  restc->call_closure_free = NULL;
  restc->call_closure = NULL;
  restc->fastpath = NULL;
  restc->aco_enabled = mtev_false;
}

void mtev_http_rest_clean_request(mtev_http_rest_closure_t *restc) {
  if (restc) ev_rest_clean(restc);
}

static void ev_rest_conn_free(void *p) {
  ev_rest_conn_t *rc = p;
  mtev_http_rest_clean_request(&rc->restc);
  free(rc);
}

/* The captures as pats: one allocation, NULL when there are none. */
static int ev_rest_set_params(mtev_http_rest_closure_t *restc, const char *subj,
                              pcre2_match_data *md, int cnt) {
  int np = cnt - 1;
  if (np <= 0) return 0;
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
  size_t bytes = (size_t)np * sizeof(char *);
  for (int i = 1; i <= np; i++)
    if (ov[2 * i] != PCRE2_UNSET) bytes += ov[2 * i + 1] - ov[2 * i] + 1;
    else bytes += 1;
  char **pp = malloc(bytes);
  if (!pp) return -1;
  char *s = (char *)(pp + np);
  for (int i = 1; i <= np; i++) {
    size_t l = ov[2 * i] != PCRE2_UNSET ? ov[2 * i + 1] - ov[2 * i] : 0;
    if (l) memcpy(s, subj + ov[2 * i], l);
    s[l] = 0;
    pp[i - 1] = s;
    s += l + 1;
  }
  restc->params = pp;
  restc->nparams = np;
  return 0;
}

static void ev_rest_answer(mtev_http_session_ctx *ctx, int code,
                           const char *reason, const char *allow) {
  mtev_http_response_status_set(ctx, code, reason);
  if (allow) mtev_http_response_header_set(ctx, "Allow", allow);
  if (code != 200) {
    mtev_http_response_header_set(ctx, "Content-Type", "text/plain");
    mtev_http_response_appendf(ctx, "%s\n", reason);
  }
  mtev_http_response_end(ctx);
}

/* Appends m to the comma-separated list (no duplicates). */
static void ev_allow_add(char *list, size_t cap, const char *m) {
  size_t ml = strlen(m);
  for (const char *p = list; *p;) {
    const char *c = strchr(p, ',');
    size_t l = c ? (size_t)(c - p) : strlen(p);
    if (l == ml && !memcmp(p, m, ml)) return;
    p = c ? c + 2 : p + l;
  }
  size_t n = strlen(list);
  if (n + ml + 3 > cap) return;
  if (n) {
    memcpy(list + n, ", ", 2);
    n += 2;
  }
  memcpy(list + n, m, ml + 1);
}

/* The routing of a request the connection's kept route does not answer:
 * the base, the rules' expressions, the captures as params, the kept route
 * for the next request.  The rule, or NULL when an answer (404, 405,
 * OPTIONS, 500) was given.  Out of ev_rest_route, so that the code a
 * request with a kept route runs through spans fewer cache lines. */
static __attribute__((noinline)) struct rest_url_dispatcher *
ev_rest_route_find(ev_rest_conn_t *rc, mtev_http_session_ctx *ctx, const char *method,
                   size_t mlen, const char *path, size_t plen, uint64_t gen) {
  mtev_http_rest_closure_t *restc = &rc->restc;
  ev_route_cache_t *lc = &rc->last;
  struct rest_url_dispatcher *r, *head_get = NULL;
  ev_rest_table_t *t = __atomic_load_n(&ev_rest_tab, __ATOMIC_ACQUIRE);
  ev_rest_base_t *b = ev_rest_base_find(t, path, plen);
  if (!b) {
    ev_rest_answer(ctx, 404, "Not Found", NULL);
    return NULL;
  }
  const char *rest = path + b->blen;
  size_t rlen = plen - b->blen;
  pcre2_match_data *md = ev_match_data();
  if (!md) {
    ev_rest_answer(ctx, 500, "Internal Server Error", NULL);
    return NULL;
  }
  int is_head = mlen == 4 && !memcmp(method, "HEAD", 4);
  int cnt = -1, same = 0;
  for (r = __atomic_load_n(&b->rules, __ATOMIC_ACQUIRE); r;
       r = __atomic_load_n(&r->next, __ATOMIC_ACQUIRE)) {
    same = r->mlen == mlen && ev_memeq(r->method, method, mlen);
    if (!same && !(is_head && !head_get && r->mlen == 3 &&
                   !memcmp(r->method, "GET", 3)))
      continue;
    int c = ev_rule_match(r, rest, rlen, md);
    if (c < 0) continue;
    if (same) {
      cnt = c; /* md holds this match */
      break;
    }
    head_get = r; /* a GET rule serves HEAD unless a HEAD rule matches */
  }
  if (!r && head_get) {
    same = 0;
    r = head_get;
    cnt = ev_rule_match(r, rest, rlen, md);
  }
  if (!r) {
    /* no rule for this method: which methods would match? */
    char allow[256] = "";
    for (struct rest_url_dispatcher *o = __atomic_load_n(&b->rules, __ATOMIC_ACQUIRE);
         o; o = __atomic_load_n(&o->next, __ATOMIC_ACQUIRE)) {
      if (ev_rule_match(o, rest, rlen, md) < 0) continue;
      ev_allow_add(allow, sizeof(allow), o->method);
      if (!strcmp(o->method, "GET")) ev_allow_add(allow, sizeof(allow), "HEAD");
    }
    if (!allow[0]) {
      ev_rest_answer(ctx, 404, "Not Found", NULL);
    } else if (!strcmp(method, "OPTIONS")) {
      ev_allow_add(allow, sizeof(allow), "OPTIONS");
      ev_rest_answer(ctx, 200, "OK", allow);
    } else {
      ev_allow_add(allow, sizeof(allow), "OPTIONS");
      ev_rest_answer(ctx, 405, "Method Not Allowed", allow);
    }
    return NULL;
  }
  if (ev_rest_set_params(restc, rest, md, cnt) != 0) {
    ev_rest_answer(ctx, 500, "Internal Server Error", NULL);
    return NULL;
  }
  if (same && cnt == 1 && mlen + 1 + plen <= EV_ROUTE_KEY) {
    lc->gen = gen;
    lc->rule = r;
    lc->mlen = (uint32_t)mlen;
    lc->plen = (uint32_t)plen;
    memcpy(lc->key, method, mlen);
    lc->key[mlen] = 0;
    memcpy(lc->key + mlen + 1, path, plen);
  }
  return r;
}

/* Routes the current request.  1: rc->rule serves it; 0: answered here. */
static int ev_rest_route(ev_rest_conn_t *rc, mtev_http_session_ctx *ctx,
                         const char *method, size_t mlen, const char *path,
                         size_t plen) {
  mtev_http_rest_closure_t *restc = &rc->restc;
  uint64_t gen = __atomic_load_n(&ev_rest_gen, __ATOMIC_ACQUIRE);
  ev_route_cache_t *lc = &rc->last;
  struct rest_url_dispatcher *r;
  if (lc->gen == gen && ev_route_key_eq(lc, method, mlen, path, plen)) {
    r = lc->rule; /* no captures: no params to set */
    goto found;
  }
  r = ev_rest_route_find(rc, ctx, method, mlen, path, plen, gen);
  if (!r) return 0;
found:
  restc->closure = __atomic_load_n(&r->closure, __ATOMIC_RELAXED);
  restc->fastpath = __atomic_load_n(&r->handler, __ATOMIC_RELAXED);
  if (__atomic_load_n(&ev_rest_acl, __ATOMIC_RELAXED) &&
      !mtev_http_rest_client_cert_auth(restc, restc->nparams, restc->params)) {
    ev_rest_answer(ctx, 403, "Forbidden", NULL);
    return 0;
  }
  rest_authorize_func_t auth = __atomic_load_n(&r->auth, __ATOMIC_RELAXED);
  if (auth && !auth(restc, restc->nparams, restc->params)) {
    ev_rest_answer(ctx, 403, "Forbidden", NULL);
    return 0;
  }
  rc->rule = r;
  return 1;
}

/* An aco rule's handler, in the coroutine the dispatcher asked for (the
 * request is routed, on its loop). */
static int ev_rest_run_aco(mtev_http_session_ctx *ctx) {
  ev_rest_conn_t *rc = mtev_http_session_dispatcher_closure(ctx);
  mtev_http_rest_closure_t *restc = &rc->restc;
  restc->aco_enabled = mtev_true;
  return restc->fastpath(restc, restc->nparams, restc->params);
}

/* The session's probe: the engine asks, from the coroutine that served the
 * previous request, whether this one is for a coroutine too: yes
 * when the connection's last route holds for it and its rule is an aco
 * rule that needs nothing else first (no auth, no ACL, no pool to move
 * to, no closure of the last request to free): the request is routed and
 * the coroutine asked for.  Else nothing is changed (the engine calls the
 * dispatcher again on the loop). */
static int ev_rest_probe(mtev_http_session_ctx *ctx) {
  uint64_t seq;
  const char *method, *path;
  size_t mlen, plen;
  ev_rest_conn_t *rc = ev_http_session_probe_args(ctx, &seq, &method, &mlen, &path, &plen);
  mtev_http_rest_closure_t *restc = &rc->restc;
  if (rc->seq == seq) return 0;
  if (restc->call_closure_free || __atomic_load_n(&ev_rest_acl, __ATOMIC_RELAXED))
    return 0;
  ev_route_cache_t *lc = &rc->last;
  if (lc->gen != __atomic_load_n(&ev_rest_gen, __ATOMIC_ACQUIRE) ||
      !ev_route_key_eq(lc, method, mlen, path, plen))
    return 0;
  struct rest_url_dispatcher *r = lc->rule;
  if (!__atomic_load_n(&r->aco, __ATOMIC_RELAXED) ||
      __atomic_load_n(&r->pool, __ATOMIC_RELAXED) ||
      __atomic_load_n(&r->auth, __ATOMIC_RELAXED))
    return 0;
  ev_rest_clean(restc); /* no closure free to call */
  restc->closure = __atomic_load_n(&r->closure, __ATOMIC_RELAXED);
  restc->fastpath = __atomic_load_n(&r->handler, __ATOMIC_RELAXED);
  rc->seq = seq;
  rc->rule = r;
  if (ev_http_session_run_aco_fn(ctx, ev_rest_run_aco) != 0) {
    rc->seq = 0; /* route it again on the loop */
    rc->rule = NULL;
  }
  return 0;
}

/* The session's dispatcher. */
static int ev_rest_dispatch(mtev_http_session_ctx *ctx) {
  /* the request's facts in one call (five accessor calls cost as much
   * as the route cache's compare) */
  uint64_t seq;
  const char *method, *path;
  size_t mlen, plen;
  ev_rest_conn_t *rc = ev_http_session_probe_args(ctx, &seq, &method, &mlen, &path, &plen);
  mtev_http_rest_closure_t *restc = &rc->restc;
  if (rc->seq != seq) {
    ev_rest_clean(restc);
    rc->seq = seq;
    rc->rule = NULL;
    if (!ev_rest_route(rc, ctx, method, mlen, path, plen)) return 0;
  }
  struct rest_url_dispatcher *r = rc->rule;
  if (!r) return 0;
  eventer_pool_t *pool = __atomic_load_n(&r->pool, __ATOMIC_RELAXED);
  if (pool && eventer_loop_pool(eventer_loop_current()) != pool) {
    if (ev_http_session_move(ctx, pool) == 0) return 0;
  }
  if (__atomic_load_n(&r->aco, __ATOMIC_RELAXED)) {
    int k = ev_http_session_aco_or_run(ctx, ev_rest_run_aco);
    if (k == 0) return 0;
    if (k < 0) {
      ev_rest_answer(ctx, 500, "Internal Server Error", NULL);
      return 0;
    }
    restc->aco_enabled = mtev_true;
  } else {
    restc->aco_enabled = mtev_http_session_aco(ctx);
  }
  return restc->fastpath(restc, restc->nparams, restc->params);
}

/* ---- uploads ------------------------------------------------------------------------------ */

mtev_boolean mtev_rest_complete_upload(mtev_http_rest_closure_t *restc,
                                       int *mask) {
  if (!restc || !restc->http_ctx) {
    if (mask) *mask = 0;
    return mtev_false;
  }
  return ev_http_complete_upload(restc->http_ctx, mask);
}

void *rest_get_raw_upload(mtev_http_rest_closure_t *restc, int *mask,
                          int *complete, int *size) {
  if (complete) *complete = 0;
  if (!mtev_rest_complete_upload(restc, mask)) return NULL;
  if (complete) *complete = 1;
  int64_t sz = 0;
  const void *d = mtev_http_request_get_upload(
      mtev_http_session_request(restc->http_ctx), &sz);
  if (size) *size = (int)sz;
  return (void *)(uintptr_t)d;
}

/* ---- the listener callbacks --------------------------------------------------------------- */

/* A connection's first call: its REST state and HTTP session, or NULL
 * (the connection is closed).  Out of line: the calls after it are the
 * common ones. */
static __attribute__((noinline, cold)) ev_rest_conn_t *
ev_rest_conn_new(eventer_t e, mtev_acceptor_closure_t *ac, int sniff) {
  ev_rest_conn_t *rc = calloc(1, sizeof(*rc));
  mtev_http_session_ctx *ctx =
      rc ? mtev_http_session_ctx_new(ev_rest_dispatch, rc, e, ac) : NULL;
  if (!ctx) {
    mtevL(mtev_error, "rest: cannot serve fd %d: %s\n", eventer_get_fd(e),
          strerror(errno));
    free(rc);
    eventer_remove_fde(e);
    int m = 0;
    eventer_close(e, &m);
    mtev_acceptor_closure_free(ac);
    return NULL;
  }
  rc->restc.http_ctx = ctx;
  rc->restc.ac = ac;
  /* the TLS peer's name (the handshake is over before the first call) */
  const char *cn = mtev_acceptor_closure_remote_cn(ac);
  rc->restc.remote_cn = (char *)(cn ? cn : "");
  mtev_acceptor_closure_set_ctx(ac, rc, ev_rest_conn_free);
  if (sniff) ev_http_session_sniff(ctx);
  ev_http_session_set_probe(ctx, ev_rest_probe);
  return rc;
}

static int ev_rest_conn_handler(eventer_t e, int mask, void *closure,
                                int sniff) {
  mtev_acceptor_closure_t *ac = closure;
  /* the ctx is ours once we set it (with our free function); before, it is
   * whatever the listener put there (its service_ctx, maybe NULL) */
  ev_rest_conn_t *rc = mtev_acceptor_closure_ctx_free_func(ac) == ev_rest_conn_free
                           ? mtev_acceptor_closure_ctx(ac)
                           : NULL;
  if (__builtin_expect(!rc, 0) && !(rc = ev_rest_conn_new(e, ac, sniff))) return 0;
  /* (0 when the session is over: mtev_http_session_drive's *done) */
  return ev_http_session_drive_cb(rc->restc.http_ctx, e, mask);
}

int mtev_http_rest_handler(eventer_t e, int mask, void *closure,
                           struct timeval *now) {
  (void)now;
  return ev_rest_conn_handler(e, mask, closure, 0);
}

int mtev_control_dispatch(eventer_t e, int mask, void *closure,
                          struct timeval *now) {
  (void)now;
  return ev_rest_conn_handler(e, mask, closure, 1);
}
