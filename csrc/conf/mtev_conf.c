/*
 * mtev_conf.c - the XML configuration (mtev_conf.h), on libxml2.
 *
 * One document is loaded at a time.  Includes are spliced into it at load
 * (an <include> element whose file was read records that file's path in
 * its _private pointer, so a node's location is found by walking up to the
 * nearest such element).  Lookups run libxml2's XPath engine on the
 * document under a read lock; loading swaps the document under the write
 * lock.
 */
#include "mtev_conf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xpath.h>

#include "eventer.h"

static char ev_conf_empty_marker;
const mtev_conf_section_t MTEV_CONF_ROOT = {NULL, NULL};
const mtev_conf_section_t MTEV_CONF_EMPTY = {NULL, &ev_conf_empty_marker};

#define EV_CONF_MAX_INCLUDE_DEPTH 16
#define EV_CONF_MAX_INHERIT_DEPTH 16

typedef struct {
  xmlDocPtr doc;
  char *path;    /* the main file as given (or the name of a string) */
  char **files;  /* resolved include paths, owned (nodes point at them) */
  size_t nfiles;
} ev_conf_t;

static pthread_rwlock_t ev_conf_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t ev_conf_app_lock = PTHREAD_MUTEX_INITIALIZER;
static char *ev_conf_app;
static ev_conf_t ev_conf; /* under ev_conf_lock */
static pthread_once_t ev_conf_once = PTHREAD_ONCE_INIT;

static void ev_conf_init_once(void) { xmlInitParser(); }

/* libxml2 reports through a per-thread handler; we collect the first
 * error of a parse and keep libxml2 from printing anything itself. */
typedef struct {
  int have;
  int line;
  char file[256];
  char msg[256];
} ev_conf_xmlerr_t;

static void ev_conf_xml_error(void *ctx, xmlErrorPtr e) {
  ev_conf_xmlerr_t *r = ctx;
  if (!r || !e || r->have || e->level < XML_ERR_ERROR) return;
  r->have = 1;
  r->line = e->line;
  snprintf(r->file, sizeof(r->file), "%s", e->file ? e->file : "");
  snprintf(r->msg, sizeof(r->msg), "%s", e->message ? e->message : "error");
  size_t n = strlen(r->msg);
  while (n && (r->msg[n - 1] == '\n' || r->msg[n - 1] == ' ')) r->msg[--n] = 0;
}

static void ev_conf_xml_quiet(void *ctx, xmlErrorPtr e) {
  (void)ctx;
  if (e && e->message)
    mtevL(mtev_debug, "mtev_conf: libxml2: %s", e->message);
}

static void ev_conf_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ev_conf_fail(char *err, size_t errlen, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (err && errlen) snprintf(err, errlen, "%s", buf);
}

/* ---- app name ------------------------------------------------------------------- */

void mtev_conf_init(const char *toplevel) {
  pthread_once(&ev_conf_once, ev_conf_init_once);
  pthread_mutex_lock(&ev_conf_app_lock);
  free(ev_conf_app);
  ev_conf_app = toplevel ? strdup(toplevel) : NULL;
  pthread_mutex_unlock(&ev_conf_app_lock);
}

const char *mtev_get_app_name(void) {
  pthread_mutex_lock(&ev_conf_app_lock);
  const char *a = ev_conf_app;
  pthread_mutex_unlock(&ev_conf_app_lock);
  return a;
}

/* ---- reading files ---------------------------------------------------------------- */

/* The whole file, NUL-terminated (malloc'd), or NULL with errno. */
static char *ev_conf_slurp(const char *path, size_t *lenp) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) goto fail;
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    goto fail;
  }
  size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) goto fail;
  for (;;) {
    if (len + 1 >= cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        goto fail;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      free(buf);
      errno = e;
      goto fail;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  *lenp = len;
  return buf;
fail:;
  int e = errno;
  close(fd);
  errno = e;
  return NULL;
}

/* Parses buf (named `name` in messages).  A snippet is a list of elements
 * without a root: it is wrapped in one, on its first line so that line
 * numbers stay right.  NULL with errno EINVAL and the message in err. */
static xmlDocPtr ev_conf_parse(const char *buf, size_t len, const char *name,
                               int snippet, char *err, size_t errlen) {
  char *wrapped = NULL;
  if (len == 0) {
    ev_conf_fail(err, errlen, "%s: the file is empty", name);
    errno = EINVAL;
    return NULL;
  }
  if (snippet) {
    /* an XML declaration must come first; blank it (same line count) */
    const char *body = buf;
    size_t blen = len;
    char *copy = NULL;
    if (len >= 5 && !memcmp(buf, "<?xml", 5)) {
      const char *end = strstr(buf, "?>");
      if (end) {
        copy = strndup(buf, len);
        if (!copy) goto nomem;
        for (char *p = copy; p < copy + (end - buf) + 2; p++)
          if (*p != '\n') *p = ' ';
        body = copy;
      }
    }
    static const char open_tag[] = "<mtev_conf_snippet>";
    static const char close_tag[] = "\n</mtev_conf_snippet>";
    wrapped = malloc(sizeof(open_tag) + blen + sizeof(close_tag));
    if (!wrapped) {
      free(copy);
      goto nomem;
    }
    memcpy(wrapped, open_tag, sizeof(open_tag) - 1);
    memcpy(wrapped + sizeof(open_tag) - 1, body, blen);
    memcpy(wrapped + sizeof(open_tag) - 1 + blen, close_tag, sizeof(close_tag));
    free(copy);
    buf = wrapped;
    len = strlen(wrapped);
  }
  ev_conf_xmlerr_t xe = {0};
  xmlSetStructuredErrorFunc(&xe, ev_conf_xml_error);
  xmlDocPtr doc = xmlReadMemory(buf, (int)len, name, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOWARNING);
  xmlSetStructuredErrorFunc(NULL, ev_conf_xml_quiet);
  free(wrapped);
  if (!doc || xe.have) {
    if (doc) xmlFreeDoc(doc);
    if (xe.have)
      ev_conf_fail(err, errlen, "%s:%d: malformed XML: %s", name, xe.line,
                   xe.msg);
    else
      ev_conf_fail(err, errlen, "%s: malformed XML", name);
    errno = EINVAL;
    return NULL;
  }
  if (!xmlDocGetRootElement(doc)) {
    xmlFreeDoc(doc);
    ev_conf_fail(err, errlen, "%s: no root element", name);
    errno = EINVAL;
    return NULL;
  }
  return doc;
nomem:
  ev_conf_fail(err, errlen, "%s: out of memory", name);
  errno = ENOMEM;
  return NULL;
}

static xmlDocPtr ev_conf_parse_file(const char *path, int snippet, char *err,
                                    size_t errlen) {
  size_t len;
  char *buf = ev_conf_slurp(path, &len);
  if (!buf) {
    int e = errno;
    ev_conf_fail(err, errlen, "%s: %s", path, strerror(e));
    errno = e;
    return NULL;
  }
  xmlDocPtr doc = ev_conf_parse(buf, len, path, snippet, err, errlen);
  int e = errno;
  free(buf);
  errno = e;
  return doc;
}

/* ---- locations -------------------------------------------------------------------- */

/* The file a node of c's document came from. */
static const char *ev_conf_node_file(const ev_conf_t *c, xmlNodePtr n) {
  for (; n && n->type != XML_DOCUMENT_NODE; n = n->parent)
    if (n->type == XML_ELEMENT_NODE && n->_private) return n->_private;
  return c->path ? c->path : "?";
}

static const char *ev_conf_node_loc(const ev_conf_t *c, xmlNodePtr n,
                                     char *buf, size_t len) {
  snprintf(buf, len, "%s:%ld", ev_conf_node_file(c, n), xmlGetLineNo(n));
  return buf;
}

/* ---- includes ------------------------------------------------------------------- */

static int ev_conf_is(xmlNodePtr n, const char *name) {
  return n && n->type == XML_ELEMENT_NODE && n->ns == NULL &&
         !strcmp((const char *)n->name, name);
}

/* The first <include file=...> not read yet, in document order. */
static xmlNodePtr ev_conf_next_include(xmlNodePtr n) {
  for (; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE) continue;
    if (ev_conf_is(n, "include") && !n->_private && xmlHasProp(n, BAD_CAST "file"))
      return n;
    xmlNodePtr in = ev_conf_next_include(n->children);
    if (in) return in;
  }
  return NULL;
}

static int ev_conf_bool_str(const char *s, int *out);

static int ev_conf_do_includes(ev_conf_t *c, char *err, size_t errlen) {
  xmlNodePtr inc;
  char loc[512];
  while ((inc = ev_conf_next_include(xmlDocGetRootElement(c->doc)))) {
    int depth = 0;
    for (xmlNodePtr p = inc->parent; p && p->type == XML_ELEMENT_NODE; p = p->parent)
      if (ev_conf_is(p, "include") && p->_private) depth++;
    ev_conf_node_loc(c, inc, loc, sizeof(loc));
    if (depth >= EV_CONF_MAX_INCLUDE_DEPTH) {
      ev_conf_fail(err, errlen,
                   "%s: includes nested more than %d deep (a file includes "
                   "itself?)", loc, EV_CONF_MAX_INCLUDE_DEPTH);
      errno = EINVAL;
      return -1;
    }
    xmlChar *file = xmlGetProp(inc, BAD_CAST "file");
    xmlChar *snip = xmlGetProp(inc, BAD_CAST "snippet");
    int snippet = 0;
    if (snip && !ev_conf_bool_str((const char *)snip, &snippet)) {
      ev_conf_fail(err, errlen, "%s: include snippet=\"%s\" is not a boolean",
                   loc, (const char *)snip);
      xmlFree(file);
      xmlFree(snip);
      errno = EINVAL;
      return -1;
    }
    xmlFree(snip);
    /* relative to the including file's directory */
    const char *base = ev_conf_node_file(c, inc);
    char *resolved;
    if (file[0] == '/' || !strchr(base, '/')) {
      resolved = strdup((const char *)file);
    } else {
      const char *slash = strrchr(base, '/');
      size_t n = (size_t)(slash - base) + 1 + strlen((const char *)file) + 1;
      resolved = malloc(n);
      if (resolved)
        snprintf(resolved, n, "%.*s/%s", (int)(slash - base), base,
                 (const char *)file);
    }
    xmlFree(file);
    char **files = resolved ? realloc(c->files, (c->nfiles + 1) * sizeof(*files))
                            : NULL;
    if (!files) {
      free(resolved);
      ev_conf_fail(err, errlen, "%s: out of memory", loc);
      errno = ENOMEM;
      return -1;
    }
    c->files = files;
    c->files[c->nfiles++] = resolved;
    char sub[1024];
    xmlDocPtr idoc = ev_conf_parse_file(resolved, snippet, sub, sizeof(sub));
    if (!idoc) {
      int e = errno;
      ev_conf_fail(err, errlen, "%s: include: %s", loc, sub);
      errno = e;
      return -1;
    }
    inc->_private = resolved; /* marks it read; names its nodes' file */
    for (xmlNodePtr ch = xmlDocGetRootElement(idoc)->children; ch; ch = ch->next) {
      xmlNodePtr copy = xmlDocCopyNode(ch, c->doc, 1);
      if (!copy || !xmlAddChild(inc, copy)) {
        if (copy) xmlFreeNode(copy);
        xmlFreeDoc(idoc);
        ev_conf_fail(err, errlen, "%s: out of memory", loc);
        errno = ENOMEM;
        return -1;
      }
    }
    xmlFreeDoc(idoc);
  }
  return 0;
}

static void ev_conf_free(ev_conf_t *c) {
  if (c->doc) xmlFreeDoc(c->doc);
  for (size_t i = 0; i < c->nfiles; i++) free(c->files[i]);
  free(c->files);
  free(c->path);
  memset(c, 0, sizeof(*c));
}

/* ---- loading -------------------------------------------------------------------- */

static char *ev_conf_trimmed(const xmlChar *s);

/* <eventer><config> children -> eventer_impl_propset, in file order. */
static int ev_conf_apply_eventer(ev_conf_t *c, char *err, size_t errlen) {
  xmlNodePtr root = xmlDocGetRootElement(c->doc);
  char loc[512];
  for (xmlNodePtr ev = root->children; ev; ev = ev->next) {
    if (!ev_conf_is(ev, "eventer")) continue;
    for (xmlNodePtr cf = ev->children; cf; cf = cf->next) {
      if (!ev_conf_is(cf, "config")) continue;
      for (xmlNodePtr k = cf->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        xmlChar *raw = xmlNodeGetContent(k);
        char *v = ev_conf_trimmed(raw);
        xmlFree(raw);
        if (!v) {
          errno = ENOMEM;
          return -1;
        }
        if (eventer_impl_propset_ex((const char *)k->name, v) != 0) {
          int e = errno;
          if (e == ENOENT) { /* unknown: a warning, as libmtev */
            mtevL(mtev_error,
                  "mtev_conf: %s: warning: unknown <eventer><config> "
                  "setting %s ignored\n",
                  ev_conf_node_loc(c, k, loc, sizeof(loc)),
                  (const char *)k->name);
            free(v);
            continue;
          }
          ev_conf_fail(err, errlen,
                       "%s: <eventer><config> %s=\"%s\": %s",
                       ev_conf_node_loc(c, k, loc, sizeof(loc)),
                       (const char *)k->name, v,
                       e == EBUSY ? "the eventer is already initialized "
                                    "(load the configuration before "
                                    "eventer_init)"
                                  : "eventer_impl_propset refused the "
                                    "value");
          free(v);
          errno = e == EBUSY ? EBUSY : EINVAL;
          return -1;
        }
        free(v);
      }
    }
  }
  return 0;
}

/* Takes over doc (and name); checks, includes, applies, installs. */
static int ev_conf_install(xmlDocPtr doc, const char *name, char *err,
                           size_t errlen) {
  ev_conf_t c = {.doc = doc, .path = strdup(name)};
  char loc[512];
  if (!c.path) {
    ev_conf_free(&c);
    ev_conf_fail(err, errlen, "%s: out of memory", name);
    errno = ENOMEM;
    return -1;
  }
  xmlNodePtr root = xmlDocGetRootElement(doc);
  pthread_mutex_lock(&ev_conf_app_lock);
  int bad_root = ev_conf_app && strcmp((const char *)root->name, ev_conf_app);
  char app[128];
  snprintf(app, sizeof(app), "%s", ev_conf_app ? ev_conf_app : "");
  pthread_mutex_unlock(&ev_conf_app_lock);
  if (bad_root) {
    ev_conf_fail(err, errlen,
                 "%s: the root element is <%s>; this application "
                 "(mtev_conf_init) reads <%s>",
                 ev_conf_node_loc(&c, root, loc, sizeof(loc)),
                 (const char *)root->name, app);
    ev_conf_free(&c);
    errno = EINVAL;
    return -1;
  }
  if (ev_conf_do_includes(&c, err, errlen) != 0 ||
      ev_conf_apply_eventer(&c, err, errlen) != 0) {
    int e = errno;
    ev_conf_free(&c);
    errno = e;
    return -1;
  }
  pthread_rwlock_wrlock(&ev_conf_lock);
  ev_conf_t old = ev_conf;
  ev_conf = c;
  pthread_rwlock_unlock(&ev_conf_lock);
  ev_conf_free(&old);
  return 0;
}

/* The message of a failed load goes to mtev_error once, and to err. */
static int ev_conf_logged(int rv, const char *msg) {
  if (rv != 0) {
    int e = errno;
    mtevL(mtev_error, "mtev_conf: %s\n", msg);
    errno = e;
  }
  return rv;
}

int mtev_conf_load_ex(const char *path, char *err, size_t errlen) {
  char local[1024];
  if (!err || !errlen) {
    err = local;
    errlen = sizeof(local);
  }
  err[0] = 0;
  if (!path) {
    ev_conf_fail(err, errlen, "mtev_conf_load: no path");
    errno = EINVAL;
    return ev_conf_logged(-1, err);
  }
  pthread_once(&ev_conf_once, ev_conf_init_once);
  xmlDocPtr doc = ev_conf_parse_file(path, 0, err, errlen);
  if (!doc) return ev_conf_logged(-1, err);
  return ev_conf_logged(ev_conf_install(doc, path, err, errlen), err);
}

int mtev_conf_load(const char *path) { return mtev_conf_load_ex(path, NULL, 0); }

int mtev_conf_load_string(const char *xml, const char *name, char *err,
                          size_t errlen) {
  char local[1024];
  if (!err || !errlen) {
    err = local;
    errlen = sizeof(local);
  }
  err[0] = 0;
  if (!name) name = "(string)";
  if (!xml) {
    ev_conf_fail(err, errlen, "%s: no document", name);
    errno = EINVAL;
    return ev_conf_logged(-1, err);
  }
  pthread_once(&ev_conf_once, ev_conf_init_once);
  xmlDocPtr doc = ev_conf_parse(xml, strlen(xml), name, 0, err, errlen);
  if (!doc) return ev_conf_logged(-1, err);
  return ev_conf_logged(ev_conf_install(doc, name, err, errlen), err);
}

char *mtev_conf_config_filename(void) {
  pthread_rwlock_rdlock(&ev_conf_lock);
  char *p = ev_conf.path ? strdup(ev_conf.path) : NULL;
  pthread_rwlock_unlock(&ev_conf_lock);
  return p;
}

void mtev_conf_fini(void) {
  pthread_rwlock_wrlock(&ev_conf_lock);
  ev_conf_t old = ev_conf;
  memset(&ev_conf, 0, sizeof(ev_conf));
  pthread_rwlock_unlock(&ev_conf_lock);
  ev_conf_free(&old);
}

/* ---- lookups ---------------------------------------------------------------------
 * Each runs under the read lock. */

static xmlNodePtr ev_conf_node(mtev_conf_section_t s) { return s.opaque1; }

static mtev_conf_section_t ev_conf_section(xmlNodePtr n) {
  mtev_conf_section_t s = {n, NULL};
  return s;
}

/* Evaluates path with section as the context node (the document for
 * MTEV_CONF_ROOT); NULL when nothing is loaded, the section is empty or
 * the expression is invalid. */
static xmlXPathObjectPtr ev_conf_eval(mtev_conf_section_t section,
                                      const char *path) {
  if (!ev_conf.doc || !path || mtev_conf_section_is_empty(section))
    return NULL;
  xmlXPathContextPtr ctx = xmlXPathNewContext(ev_conf.doc);
  if (!ctx) return NULL;
  xmlNodePtr n = ev_conf_node(section);
  if (n && n->doc != ev_conf.doc) { /* a section of a replaced document */
    xmlXPathFreeContext(ctx);
    return NULL;
  }
  ctx->node = n ? n : (xmlNodePtr)ev_conf.doc;
  xmlSetStructuredErrorFunc(NULL, ev_conf_xml_quiet);
  xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST path, ctx);
  xmlXPathFreeContext(ctx);
  if (!o) mtevL(mtev_error, "mtev_conf: invalid XPath expression \"%s\"\n", path);
  return o;
}

static int ev_conf_nodeset_len(xmlXPathObjectPtr o) {
  return (o && o->type == XPATH_NODESET && o->nodesetval)
             ? o->nodesetval->nodeNr
             : 0;
}

mtev_boolean mtev_conf_section_is_empty(mtev_conf_section_t s) {
  return (s.opaque1 == NULL && s.opaque2 == &ev_conf_empty_marker) ? mtev_true
                                                                  : mtev_false;
}

mtev_conf_section_t mtev_conf_get_section(mtev_conf_section_t section,
                                          const char *path) {
  mtev_conf_section_t out = MTEV_CONF_EMPTY;
  pthread_rwlock_rdlock(&ev_conf_lock);
  xmlXPathObjectPtr o = ev_conf_eval(section, path);
  for (int i = 0; i < ev_conf_nodeset_len(o); i++) {
    xmlNodePtr n = o->nodesetval->nodeTab[i];
    if (n->type == XML_ELEMENT_NODE) {
      out = ev_conf_section(n);
      break;
    }
  }
  if (o) xmlXPathFreeObject(o);
  pthread_rwlock_unlock(&ev_conf_lock);
  return out;
}
mtev_conf_section_t mtev_conf_get_section_read(mtev_conf_section_t s,
                                               const char *path) {
  return mtev_conf_get_section(s, path);
}
mtev_conf_section_t mtev_conf_get_section_write(mtev_conf_section_t s,
                                                const char *path) {
  return mtev_conf_get_section(s, path);
}
void mtev_conf_release_section(mtev_conf_section_t s) { (void)s; }
void mtev_conf_release_section_read(mtev_conf_section_t s) { (void)s; }
void mtev_conf_release_section_write(mtev_conf_section_t s) { (void)s; }

mtev_conf_section_t *mtev_conf_get_sections(mtev_conf_section_t section,
                                            const char *path, int *cnt) {
  mtev_conf_section_t *out = NULL;
  int n = 0;
  pthread_rwlock_rdlock(&ev_conf_lock);
  xmlXPathObjectPtr o = ev_conf_eval(section, path);
  int len = ev_conf_nodeset_len(o);
  if (len > 0) out = calloc((size_t)len, sizeof(*out));
  for (int i = 0; out && i < len; i++) {
    xmlNodePtr node = o->nodesetval->nodeTab[i];
    if (node->type == XML_ELEMENT_NODE) out[n++] = ev_conf_section(node);
  }
  if (o) xmlXPathFreeObject(o);
  pthread_rwlock_unlock(&ev_conf_lock);
  if (n == 0) {
    free(out);
    out = NULL;
  }
  if (cnt) *cnt = n;
  return out;
}
mtev_conf_section_t *mtev_conf_get_sections_read(mtev_conf_section_t s,
                                                 const char *path, int *cnt) {
  return mtev_conf_get_sections(s, path, cnt);
}
mtev_conf_section_t *mtev_conf_get_sections_write(mtev_conf_section_t s,
                                                  const char *path, int *cnt) {
  return mtev_conf_get_sections(s, path, cnt);
}
void mtev_conf_release_sections(mtev_conf_section_t *sections, int cnt) {
  (void)cnt;
  free(sections);
}
void mtev_conf_release_sections_read(mtev_conf_section_t *s, int cnt) {
  mtev_conf_release_sections(s, cnt);
}
void mtev_conf_release_sections_write(mtev_conf_section_t *s, int cnt) {
  mtev_conf_release_sections(s, cnt);
}

const char *mtev_conf_section_location(mtev_conf_section_t section, char *buf,
                                       size_t len) {
  if (!buf || !len) return "";
  buf[0] = 0;
  xmlNodePtr n = ev_conf_node(section);
  if (!n) return buf;
  pthread_rwlock_rdlock(&ev_conf_lock);
  if (ev_conf.doc && n->doc == ev_conf.doc) ev_conf_node_loc(&ev_conf, n, buf, len);
  pthread_rwlock_unlock(&ev_conf_lock);
  return buf;
}

/* The value path selects (the last node of a node set), malloc'd, or
 * NULL. */
static char *ev_conf_value(mtev_conf_section_t section, const char *path) {
  char *out = NULL;
  pthread_rwlock_rdlock(&ev_conf_lock);
  xmlXPathObjectPtr o = ev_conf_eval(section, path);
  if (o) {
    switch (o->type) {
    case XPATH_NODESET: {
      int len = ev_conf_nodeset_len(o);
      if (len > 0) {
        xmlChar *v = xmlNodeGetContent(o->nodesetval->nodeTab[len - 1]);
        out = strdup(v ? (const char *)v : "");
        xmlFree(v);
      }
      break;
    }
    case XPATH_STRING:
      out = strdup(o->stringval ? (const char *)o->stringval : "");
      break;
    case XPATH_BOOLEAN:
      out = strdup(o->boolval ? "true" : "false");
      break;
    case XPATH_NUMBER: {
      char b[64];
      snprintf(b, sizeof(b), "%.17g", o->floatval);
      out = strdup(b);
      break;
    }
    default:
      break;
    }
    xmlXPathFreeObject(o);
  }
  pthread_rwlock_unlock(&ev_conf_lock);
  return out;
}

int mtev_conf_get_string(mtev_conf_section_t section, const char *path,
                         char **value) {
  char *v = ev_conf_value(section, path);
  if (!v) return 0;
  if (value)
    *value = v;
  else
    free(v);
  return 1;
}

int mtev_conf_get_stringbuf(mtev_conf_section_t section, const char *path,
                            char *value, int len) {
  char *v = ev_conf_value(section, path);
  if (!v) return 0;
  int ok = value && len > 0 && strlen(v) < (size_t)len;
  if (ok) memcpy(value, v, strlen(v) + 1);
  free(v);
  return ok;
}

/* Whitespace-trimmed copy (malloc'd), or NULL when out of memory. */
static char *ev_conf_trimmed(const xmlChar *s) {
  const char *p = s ? (const char *)s : "";
  while (isspace((unsigned char)*p)) p++;
  size_t n = strlen(p);
  while (n && isspace((unsigned char)p[n - 1])) n--;
  return strndup(p, n);
}

/* A whole number: optional sign, decimal digits or 0x hex. */
static int ev_conf_parse_ll(const char *s, long long lo, long long hi,
                            long long *out) {
  char *t = ev_conf_trimmed((const xmlChar *)s);
  if (!t) return 0;
  const char *p = t;
  int neg = 0;
  if (*p == '-' || *p == '+') neg = *p++ == '-';
  int base = 10;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p += 2;
  }
  int ok = isxdigit((unsigned char)*p) && (base == 16 || isdigit((unsigned char)*p));
  char *end = NULL;
  errno = 0;
  unsigned long long u = ok ? strtoull(p, &end, base) : 0;
  ok = ok && errno == 0 && end && *end == 0;
  long long v = 0;
  if (ok) {
    if (neg) {
      ok = u <= (unsigned long long)LLONG_MAX + 1ull;
      v = u == (unsigned long long)LLONG_MAX + 1ull ? LLONG_MIN : -(long long)u;
    } else {
      ok = u <= (unsigned long long)LLONG_MAX;
      v = (long long)u;
    }
  }
  ok = ok && v >= lo && v <= hi;
  free(t);
  if (ok) *out = v;
  return ok;
}

static int ev_conf_bool_str(const char *s, int *out) {
  static const char *const yes[] = {"true", "on", "yes", "1"};
  static const char *const no[] = {"false", "off", "no", "0"};
  char *t = ev_conf_trimmed((const xmlChar *)s);
  if (!t) return 0;
  int found = 0;
  for (size_t i = 0; i < 4 && !found; i++) {
    if (!strcasecmp(t, yes[i])) found = 1, *out = 1;
    else if (!strcasecmp(t, no[i])) found = 1, *out = 0;
  }
  free(t);
  return found;
}

mtev_boolean mtev_conf_string_to_boolean(const char *str) {
  int b = 0;
  return (str && ev_conf_bool_str(str, &b) && b) ? mtev_true : mtev_false;
}

int32_t mtev_conf_string_to_int32(const char *str) {
  long long v = 0;
  return (str && ev_conf_parse_ll(str, INT32_MIN, INT32_MAX, &v)) ? (int32_t)v : 0;
}

static int ev_conf_get_ll(mtev_conf_section_t section, const char *path,
                          long long lo, long long hi, long long *out) {
  char *v = ev_conf_value(section, path);
  if (!v) return 0;
  int ok = ev_conf_parse_ll(v, lo, hi, out);
  if (!ok)
    mtevL(mtev_error, "mtev_conf: %s: \"%s\" is not a whole number in "
          "[%lld, %lld]\n", path, v, lo, hi);
  free(v);
  return ok;
}

#define EV_CONF_INT_GETTER(fn, type, lo, hi)                                 \
  int fn(mtev_conf_section_t section, const char *path, type *value) {       \
    long long v;                                                             \
    if (!ev_conf_get_ll(section, path, (lo), (hi), &v)) return 0;            \
    if (value) *value = (type)v;                                             \
    return 1;                                                                \
  }
EV_CONF_INT_GETTER(mtev_conf_get_int32, int32_t, INT32_MIN, INT32_MAX)
EV_CONF_INT_GETTER(mtev_conf_get_int, int, INT_MIN, INT_MAX)
EV_CONF_INT_GETTER(mtev_conf_get_int64, int64_t, INT64_MIN, INT64_MAX)
EV_CONF_INT_GETTER(mtev_conf_get_uint32, uint32_t, 0, UINT32_MAX)

int mtev_conf_get_uint64(mtev_conf_section_t section, const char *path,
                         uint64_t *value) {
  long long v; /* values past INT64_MAX are refused */
  if (!ev_conf_get_ll(section, path, 0, LLONG_MAX, &v)) return 0;
  if (value) *value = (uint64_t)v;
  return 1;
}

int mtev_conf_get_double(mtev_conf_section_t section, const char *path,
                         double *value) {
  char *v = ev_conf_value(section, path);
  if (!v) return 0;
  char *t = ev_conf_trimmed((const xmlChar *)v), *end = NULL;
  errno = 0;
  double d = t ? strtod(t, &end) : 0;
  int ok = t && *t && end && *end == 0 && errno == 0;
  if (!ok)
    mtevL(mtev_error, "mtev_conf: %s: \"%s\" is not a number\n", path, v);
  free(t);
  free(v);
  if (ok && value) *value = d;
  return ok;
}

int mtev_conf_get_float(mtev_conf_section_t section, const char *path,
                        float *value) {
  double d;
  if (!mtev_conf_get_double(section, path, &d)) return 0;
  if (value) *value = (float)d;
  return 1;
}

int mtev_conf_get_boolean(mtev_conf_section_t section, const char *path,
                          mtev_boolean *value) {
  char *v = ev_conf_value(section, path);
  if (!v) return 0;
  int b = 0, ok = ev_conf_bool_str(v, &b);
  if (!ok)
    mtevL(mtev_error, "mtev_conf: %s: \"%s\" is not a boolean (true/false, "
          "on/off, yes/no, 1/0)\n", path, v);
  free(v);
  if (ok && value) *value = b ? mtev_true : mtev_false;
  return ok;
}

/* ---- key/value sets -------------------------------------------------------------- */

static xmlNodePtr ev_conf_find_id(xmlNodePtr n, const xmlChar *id) {
  for (; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE) continue;
    xmlChar *v = xmlGetProp(n, BAD_CAST "id");
    int match = v && xmlStrEqual(v, id);
    xmlFree(v);
    if (match) return n;
    xmlNodePtr in = ev_conf_find_id(n->children, id);
    if (in) return in;
  }
  return NULL;
}

/* Adds set node c to h: what it inherits explicitly, then its own keys. */
static void ev_conf_merge_set(mtev_hash_table *h, xmlNodePtr c, int depth) {
  xmlChar *inherit = xmlGetProp(c, BAD_CAST "inherit");
  if (inherit) {
    xmlNodePtr from = ev_conf_find_id(xmlDocGetRootElement(c->doc), inherit);
    if (!from)
      mtevL(mtev_error, "mtev_conf: inherit=\"%s\": no element has that id\n",
            (const char *)inherit);
    else if (depth >= EV_CONF_MAX_INHERIT_DEPTH)
      mtevL(mtev_error, "mtev_conf: inherit=\"%s\": inherits more than %d "
            "deep (a cycle?)\n", (const char *)inherit, EV_CONF_MAX_INHERIT_DEPTH);
    else if (from != c)
      ev_conf_merge_set(h, from, depth + 1);
    xmlFree(inherit);
  }
  for (xmlNodePtr k = c->children; k; k = k->next) {
    /* a nested set (a <config> in a <config>) is not a key of this one */
    if (k->type != XML_ELEMENT_NODE || k->ns || xmlStrEqual(k->name, c->name))
      continue;
    xmlChar *v = xmlNodeGetContent(k);
    char *key = strdup((const char *)k->name);
    char *val = strdup(v ? (const char *)v : "");
    xmlFree(v);
    if (!key || !val || !mtev_hash_replace(h, key, (int)strlen(key), val, free, free)) {
      free(key);
      free(val);
    }
  }
}

mtev_hash_table *mtev_conf_get_hash(mtev_conf_section_t section,
                                    const char *path) {
  mtev_hash_table *h = calloc(1, sizeof(*h));
  if (!h || !path) return h;
  char expr[512];
  snprintf(expr, sizeof(expr), "ancestor-or-self::node()/%s", path);
  pthread_rwlock_rdlock(&ev_conf_lock);
  xmlXPathObjectPtr o = ev_conf_eval(section, expr);
  for (int i = 0; i < ev_conf_nodeset_len(o); i++) {
    xmlNodePtr c = o->nodesetval->nodeTab[i];
    if (c->type == XML_ELEMENT_NODE) ev_conf_merge_set(h, c, 0);
  }
  if (o) xmlXPathFreeObject(o);
  pthread_rwlock_unlock(&ev_conf_lock);
  return h;
}

mtev_boolean mtev_conf_env_off(mtev_conf_section_t section, const char *attr) {
  char expr[256];
  snprintf(expr, sizeof(expr), "ancestor-or-self::node()/@%s",
           attr ? attr : "require_env");
  char *req = ev_conf_value(section, expr);
  if (!req) return mtev_false;
  char *r = ev_conf_trimmed((const xmlChar *)req);
  free(req);
  if (!r) return mtev_false;
  mtev_boolean off = mtev_false;
  char *ne = strstr(r, "!="), *eq = strchr(r, '=');
  if (r[0] == '!') {
    off = getenv(r + 1) != NULL;
  } else if (ne) {
    *ne = 0;
    const char *v = getenv(r);
    off = v && !strcmp(v, ne + 2);
  } else if (eq) {
    *eq = 0;
    const char *v = getenv(r);
    off = !v || strcmp(v, eq + 1) != 0;
  } else if (r[0]) {
    off = getenv(r) == NULL;
  }
  free(r);
  return off;
}
