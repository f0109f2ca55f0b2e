/*
 * mtev_conf.h - libmtev's XML configuration (mtev_conf), read with
 * libxml2: the file that describes a service.
 *
 *   mtev_conf_init("myapp");                 // the root element's name
 *   if (mtev_conf_load("/etc/myapp.conf") != 0) exit(2);  // logs file:line
 *   eventer_init();                          // takes <eventer><config>
 *   mtev_listener_init("myapp");             // starts <listeners>
 *
 * A file:
 *
 *   <myapp>
 *     <eventer><config><concurrency>4</concurrency></config></eventer>
 *     <listeners type="listen_to_me" accept_thread="on">
 *       <config><idle_timeout>30000</idle_timeout></config>
 *       <listener address="*" port="9999"/>
 *     </listeners>
 *     <include file="more.conf"/>     <!-- its root's children go here -->
 *   </myapp>
 *
 * Lookups take an XPath expression (libxml2's engine), relative to a
 * section (MTEV_CONF_ROOT: the document).  A lookup that finds several
 * nodes uses the last one in document order, so the libmtev idiom
 * "ancestor-or-self::node()/@port" yields the nearest definition: an
 * attribute set on a parent element is inherited by its children unless a
 * child sets its own.
 *
 * mtev_conf_get_hash(section, "config") merges key/value sets the same
 * way: the <config> children of every ancestor-or-self of `section`, from
 * the root down (deeper keys replace shallower ones).  A <config> with
 * inherit="ID" first takes, after its parent's keys, the keys of the
 * <config id="ID"> anywhere in the file (and what that one inherits), then
 * its own.  Each child element of a <config> is a key (its name) whose
 * value is its text.
 *
 * Loading:
 *  - the root element must be named as mtev_conf_init said (any name if
 *    it was given NULL);
 *  - <include file="F"/> (F relative to the including file) puts the
 *    children of F's root element under the <include> element;
 *    snippet="true" takes F as a list of elements without a root;
 *  - the children of /ROOT/eventer/config go to eventer_impl_propset()
 *    (concurrency, loop_<name>, default_queue_threads, ...), so the file
 *    must be loaded before eventer_init();
 *  - every error names the file and line: a missing or unreadable file,
 *    malformed XML, a bad include, the wrong root element, an eventer
 *    setting eventer_impl_propset() refuses (or eventer_init() already
 *    ran).  A failed load changes nothing: the configuration loaded
 *    before (if any) stays, no eventer setting is applied.
 *
 * Threads: loading is done once, at start-up, before other threads use
 * the configuration; lookups are THREAD-SAFE.  A section (and the strings
 * mtev_conf_get_string returns copies of) stays valid until the next
 * mtev_conf_load or mtev_conf_fini, which replace the document.
 *
 * Differences from libmtev: the configuration is read-only (no
 * mtev_conf_set_*, no saving, no journaling, no backingstore); the
 * _read/_write variants take no lock (there are no writers).
 */
#ifndef MTEV_CONF_H
#define MTEV_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "mtev_hash.h"
#include "mtev_log.h" /* mtev_boolean */

#ifdef __cplusplus
extern "C" {
#endif

/* A node of the configuration (opaque). */
typedef struct mtev_conf_section_opaque {
  void *opaque1;
  void *opaque2;
} mtev_conf_section_opaque_t;
#define mtev_conf_section_t mtev_conf_section_opaque_t

/* The document itself (the context for absolute paths) and "no node". */
extern const mtev_conf_section_t MTEV_CONF_ROOT;
extern const mtev_conf_section_t MTEV_CONF_EMPTY;

/* ---- loading ------------------------------------------------------------------ */

/* Names the application: the root element a loaded file must have.  NULL
 * accepts any root. */
void mtev_conf_init(const char *toplevel);
/* The name given to mtev_conf_init, or NULL. */
const char *mtev_get_app_name(void);

/* Loads and checks the file; 0, or -1 with errno (ENOENT, EACCES, EINVAL
 * for malformed or invalid content, EBUSY for an eventer setting after
 * eventer_init) after logging "file:line: what" to mtev_error. */
int mtev_conf_load(const char *path);
/* The same, with the message also in err (errlen bytes, NUL-terminated). */
int mtev_conf_load_ex(const char *path, char *err, size_t errlen);
/* Loads a document held in memory; `name` stands for the file in messages
 * and includes are relative to the working directory. */
int mtev_conf_load_string(const char *xml, const char *name, char *err,
                          size_t errlen);
/* The path of the loaded file (malloc'd; free it), or NULL. */
char *mtev_conf_config_filename(void);
/* Frees the loaded document (sections from it become invalid). */
void mtev_conf_fini(void);

/* ---- sections ----------------------------------------------------------------- */

/* The first element `path` selects (relative to section), or
 * MTEV_CONF_EMPTY. */
mtev_conf_section_t mtev_conf_get_section(mtev_conf_section_t section,
                                          const char *path);
mtev_conf_section_t mtev_conf_get_section_read(mtev_conf_section_t section,
                                               const char *path);
mtev_conf_section_t mtev_conf_get_section_write(mtev_conf_section_t section,
                                                const char *path);
void mtev_conf_release_section(mtev_conf_section_t section);
void mtev_conf_release_section_read(mtev_conf_section_t section);
void mtev_conf_release_section_write(mtev_conf_section_t section);

/* Every element `path` selects, in document order (malloc'd array; *cnt
 * elements, NULL when none).  Release with mtev_conf_release_sections. */
mtev_conf_section_t *mtev_conf_get_sections(mtev_conf_section_t section,
                                            const char *path, int *cnt);
mtev_conf_section_t *mtev_conf_get_sections_read(mtev_conf_section_t section,
                                                 const char *path, int *cnt);
mtev_conf_section_t *mtev_conf_get_sections_write(mtev_conf_section_t section,
                                                  const char *path, int *cnt);
void mtev_conf_release_sections(mtev_conf_section_t *sections, int cnt);
void mtev_conf_release_sections_read(mtev_conf_section_t *sections, int cnt);
void mtev_conf_release_sections_write(mtev_conf_section_t *sections, int cnt);

mtev_boolean mtev_conf_section_is_empty(mtev_conf_section_t section);

/* "file:line" of the section's element (for messages), written to buf;
 * returns buf ("" for the root or an empty section). */
const char *mtev_conf_section_location(mtev_conf_section_t section, char *buf,
                                       size_t len);

/* ---- values --------------------------------------------------------------------
 * Each returns 1 and sets *value when `path` selects something, else 0 and
 * leaves *value alone.  Numbers must be whole decimal (or 0x hex) numbers
 * in range, booleans one of true/false, on/off, yes/no, 1/0 (any case);
 * anything else counts as not found and is logged. */
int mtev_conf_get_string(mtev_conf_section_t section, const char *path,
                         char **value); /* malloc'd copy */
int mtev_conf_get_stringbuf(mtev_conf_section_t section, const char *path,
                            char *value, int len); /* 0 if it does not fit */
int mtev_conf_get_int32(mtev_conf_section_t section, const char *path,
                        int32_t *value);
int mtev_conf_get_int(mtev_conf_section_t section, const char *path,
                      int *value);
int mtev_conf_get_int64(mtev_conf_section_t section, const char *path,
                        int64_t *value);
int mtev_conf_get_uint32(mtev_conf_section_t section, const char *path,
                         uint32_t *value);
int mtev_conf_get_uint64(mtev_conf_section_t section, const char *path,
                         uint64_t *value);
int mtev_conf_get_double(mtev_conf_section_t section, const char *path,
                         double *value);
int mtev_conf_get_float(mtev_conf_section_t section, const char *path,
                        float *value);
int mtev_conf_get_boolean(mtev_conf_section_t section, const char *path,
                          mtev_boolean *value);

/* Conversions as the getters do them (0 / mtev_false for bad input). */
mtev_boolean mtev_conf_string_to_boolean(const char *str);
int32_t mtev_conf_string_to_int32(const char *str);

/* The merged key/value set `path` (normally "config") of section, as
 * described at the top: a malloc'd table of malloc'd strings, never NULL
 * (empty when nothing matched).  Free it with
 * mtev_hash_destroy(h, free, free); free(h). */
mtev_hash_table *mtev_conf_get_hash(mtev_conf_section_t section,
                                    const char *path);

/* libmtev's require_env: mtev_true when the section's `attr` (NULL:
 * "require_env", inherited like any attribute) says the environment rules
 * it out.  "VAR": VAR must be set; "!VAR": VAR must not be set;
 * "VAR=value" / "VAR!=value": VAR must (not) equal value. */
mtev_boolean mtev_conf_env_off(mtev_conf_section_t section, const char *attr);

#ifdef __cplusplus
}
#endif

#endif /* MTEV_CONF_H */
