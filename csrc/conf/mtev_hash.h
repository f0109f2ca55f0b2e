/*
 * mtev_hash.h - libmtev's mtev_hash API, the part a service needs to read
 * its configuration: a small table of byte-string keys to pointers.
 *
 *   mtev_hash_table *h = mtev_conf_get_hash(section, "config");
 *   const char *v;
 *   if (mtev_hash_retr_str(h, "idle_timeout", strlen("idle_timeout"), &v))
 *     ...;
 *   mtev_hash_destroy(h, free, free);
 *   free(h);
 *
 * Keys are (pointer, length) pairs compared bytewise; neither keys nor
 * values are copied: they must outlive their entry, and the free functions
 * given to mtev_hash_delete/_delete_all/_destroy/_replace release them.
 * Iteration (mtev_hash_adv) visits entries in insertion order.
 *
 * Differences from libmtev: the table is sized for configuration data
 * (lookups are O(1), a delete is O(n)); it takes no lock: a table may be
 * read from any number of threads at once, but a write must not overlap
 * any other use (mtev_hash_init_locks accepts libmtev's lock modes and
 * ignores them).
 */
#ifndef MTEV_HASH_H
#define MTEV_HASH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*NoitHashFreeFunc)(void *);

typedef enum mtev_hash_lock_mode {
  MTEV_HASH_LOCK_MODE_NONE = 0,
  MTEV_HASH_LOCK_MODE_MUTEX = 1,
  MTEV_HASH_LOCK_MODE_SPIN = 2
} mtev_hash_lock_mode_t;

struct mtev_hash_entry; /* private */

typedef struct mtev_hash_table {
  struct mtev_hash_entry *entries; /* insertion order, `size` used */
  uint32_t *index;                 /* open addressing: entry index + 1 */
  uint32_t size, cap;              /* entries used / allocated */
  uint32_t mask;                   /* index slots - 1 (0: no index yet) */
} mtev_hash_table;

typedef struct mtev_hash_iter {
  uint32_t pos; /* next entry to visit */
  union {
    const char *str;
    void *ptr;
  } key;
  union {
    const char *str;
    void *ptr;
  } value;
  int klen;
} mtev_hash_iter;

#define MTEV_HASH_EMPTY {NULL, NULL, 0, 0, 0}
#define MTEV_HASH_ITER_ZERO {0, {NULL}, {NULL}, 0}
#define MTEV_HASH_DEFAULT_SIZE (1 << 7)

/* An empty table (an all-zero table is empty too). */
void mtev_hash_init(mtev_hash_table *h);
void mtev_hash_init_size(mtev_hash_table *h, int size);
void mtev_hash_init_locks(mtev_hash_table *h, int size,
                          mtev_hash_lock_mode_t lock_mode);

/* Inserts k -> data.  1, or 0 if k is already present (nothing changes)
 * or memory ran out. */
int mtev_hash_store(mtev_hash_table *h, const char *k, int klen, void *data);
/* Inserts or replaces; a replaced entry's key and data are released with
 * keyfree/datafree (either may be NULL).  1, or 0 when out of memory. */
int mtev_hash_replace(mtev_hash_table *h, const char *k, int klen, void *data,
                      NoitHashFreeFunc keyfree, NoitHashFreeFunc datafree);
/* Inserts or replaces, handing the replaced key and data back (NULL when
 * k was new).  1, or 0 when out of memory. */
int mtev_hash_set(mtev_hash_table *h, const char *k, int klen, void *data,
                  char **oldkey, void **olddata);

/* 1 and *data when k is present, else 0. */
int mtev_hash_retrieve(mtev_hash_table *h, const char *k, int klen,
                       void **data);
int mtev_hash_retr_str(mtev_hash_table *h, const char *k, int klen,
                       const char **dstr);
/* The string value of NUL-terminated key, or NULL (libmtev's dict view). */
const char *mtev_hash_dict_get(mtev_hash_table *h, const char *key);

/* 1 if k was present (released with keyfree/datafree), else 0. */
int mtev_hash_delete(mtev_hash_table *h, const char *k, int klen,
                     NoitHashFreeFunc keyfree, NoitHashFreeFunc datafree);
/* Releases every entry; the table stays usable (empty). */
void mtev_hash_delete_all(mtev_hash_table *h, NoitHashFreeFunc keyfree,
                          NoitHashFreeFunc datafree);
/* Releases every entry and the table's own memory (not h itself). */
void mtev_hash_destroy(mtev_hash_table *h, NoitHashFreeFunc keyfree,
                       NoitHashFreeFunc datafree);
int mtev_hash_size(mtev_hash_table *h);

/* Copies src into dst as a dictionary: both hold NUL-terminated malloc'd
 * strings; existing keys of dst are replaced (old values freed). */
void mtev_hash_merge_as_dict(mtev_hash_table *dst, mtev_hash_table *src);

/* Iteration in insertion order; the table must not change meanwhile:
 *   mtev_hash_iter it = MTEV_HASH_ITER_ZERO;
 *   while (mtev_hash_adv(h, &it)) use(it.key.str, it.klen, it.value.str); */
int mtev_hash_adv(mtev_hash_table *h, mtev_hash_iter *iter);
/* libmtev's older iteration forms. */
int mtev_hash_next(mtev_hash_table *h, mtev_hash_iter *iter, const char **k,
                   int *klen, void **data);
int mtev_hash_next_str(mtev_hash_table *h, mtev_hash_iter *iter,
                       const char **k, int *klen, const char **dstr);

#ifdef __cplusplus
}
#endif

#endif /* MTEV_HASH_H */
