/*
 * mtev_hash.c - a small insertion-ordered hash table (mtev_hash.h).
 *
 * Entries live in a dense array in insertion order; an open-addressing
 * index of (entry position + 1) with linear probing finds them.  The index
 * has at least twice as many slots as there are entries.  A delete closes
 * the gap in the array and rebuilds the index: configuration tables are
 * small and mostly read.
 */
#include "mtev_hash.h"

#include <stdlib.h>
#include <string.h>

struct mtev_hash_entry {
  const char *key;
  void *data;
  int klen;
  uint32_t hash;
};

static uint32_t hash_bytes(const char *k, int klen) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (int i = 0; i < klen; i++) {
    h ^= (unsigned char)k[i];
    h *= 16777619u;
  }
  return h;
}

void mtev_hash_init(mtev_hash_table *h) {
  if (h) memset(h, 0, sizeof(*h));
}
void mtev_hash_init_size(mtev_hash_table *h, int size) {
  (void)size; /* grows on demand */
  mtev_hash_init(h);
}
void mtev_hash_init_locks(mtev_hash_table *h, int size,
                          mtev_hash_lock_mode_t lock_mode) {
  (void)lock_mode; /* see the header: no locks */
  mtev_hash_init_size(h, size);
}

/* Position of k in h->entries, or -1; *slot is where k is or would go. */
static int64_t find(const mtev_hash_table *h, const char *k, int klen,
                    uint32_t hv, uint32_t *slot) {
  if (!h->mask) return -1;
  for (uint32_t i = hv & h->mask;; i = (i + 1) & h->mask) {
    uint32_t v = h->index[i];
    if (v == 0) {
      if (slot) *slot = i;
      return -1;
    }
    const struct mtev_hash_entry *en = &h->entries[v - 1];
    if (en->hash == hv && en->klen == klen &&
        (klen == 0 || !memcmp(en->key, k, (size_t)klen))) {
      if (slot) *slot = i;
      return (int64_t)(v - 1);
    }
  }
}

static void reindex(mtev_hash_table *h) {
  memset(h->index, 0, ((size_t)h->mask + 1) * sizeof(*h->index));
  for (uint32_t n = 0; n < h->size; n++) {
    uint32_t i = h->entries[n].hash & h->mask;
    while (h->index[i]) i = (i + 1) & h->mask;
    h->index[i] = n + 1;
  }
}

/* Room for one more entry.  0, or -1 when out of memory. */
static int grow(mtev_hash_table *h) {
  if (h->size == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 8;
    struct mtev_hash_entry *e = realloc(h->entries, cap * sizeof(*e));
    if (!e) return -1;
    h->entries = e;
    h->cap = cap;
  }
  if ((uint64_t)(h->size + 1) * 2 > (uint64_t)h->mask + 1 || !h->mask) {
    uint32_t slots = h->mask ? (h->mask + 1) * 2 : 16;
    uint32_t *idx = calloc(slots, sizeof(*idx));
    if (!idx) return -1;
    free(h->index);
    h->index = idx;
    h->mask = slots - 1;
    reindex(h);
  }
  return 0;
}

static int put(mtev_hash_table *h, const char *k, int klen, void *data,
               int replace, char **oldkey, void **olddata) {
  if (oldkey) *oldkey = NULL;
  if (olddata) *olddata = NULL;
  if (!h || (!k && klen) || klen < 0) return 0;
  uint32_t hv = hash_bytes(k, klen), slot;
  int64_t pos = find(h, k, klen, hv, &slot);
  if (pos >= 0) {
    if (!replace) return 0;
    struct mtev_hash_entry *en = &h->entries[pos];
    if (oldkey) *oldkey = (char *)en->key;
    if (olddata) *olddata = en->data;
    en->key = k;
    en->data = data;
    return 1;
  }
  if (grow(h) != 0) return 0;
  find(h, k, klen, hv, &slot); /* the index may have been rebuilt */
  h->entries[h->size] = (struct mtev_hash_entry){k, data, klen, hv};
  h->index[slot] = ++h->size;
  return 1;
}

int mtev_hash_store(mtev_hash_table *h, const char *k, int klen, void *data) {
  return put(h, k, klen, data, 0, NULL, NULL);
}

int mtev_hash_set(mtev_hash_table *h, const char *k, int klen, void *data,
                  char **oldkey, void **olddata) {
  return put(h, k, klen, data, 1, oldkey, olddata);
}

int mtev_hash_replace(mtev_hash_table *h, const char *k, int klen, void *data,
                      NoitHashFreeFunc keyfree, NoitHashFreeFunc datafree) {
  char *ok;
  void *od;
  if (!put(h, k, klen, data, 1, &ok, &od)) return 0;
  if (ok && keyfree && ok != k) keyfree(ok);
  if (od && datafree && od != data) datafree(od);
  return 1;
}

int mtev_hash_retrieve(mtev_hash_table *h, const char *k, int klen,
                       void **data) {
  if (!h || (!k && klen) || klen < 0) return 0;
  int64_t pos = find(h, k, klen, hash_bytes(k, klen), NULL);
  if (pos < 0) return 0;
  if (data) *data = h->entries[pos].data;
  return 1;
}

int mtev_hash_retr_str(mtev_hash_table *h, const char *k, int klen,
                       const char **dstr) {
  void *v;
  if (!mtev_hash_retrieve(h, k, klen, &v)) return 0;
  if (dstr) *dstr = v;
  return 1;
}

const char *mtev_hash_dict_get(mtev_hash_table *h, const char *key) {
  const char *v;
  if (!key || !mtev_hash_retr_str(h, key, (int)strlen(key), &v)) return NULL;
  return v;
}

int mtev_hash_delete(mtev_hash_table *h, const char *k, int klen,
                     NoitHashFreeFunc keyfree, NoitHashFreeFunc datafree) {
  if (!h || (!k && klen) || klen < 0) return 0;
  int64_t pos = find(h, k, klen, hash_bytes(k, klen), NULL);
  if (pos < 0) return 0;
  struct mtev_hash_entry en = h->entries[pos];
  memmove(&h->entries[pos], &h->entries[pos + 1],
          (h->size - (uint32_t)pos - 1) * sizeof(en));
  h->size--;
  reindex(h);
  if (keyfree && en.key) keyfree((void *)en.key);
  if (datafree && en.data) datafree(en.data);
  return 1;
}

void mtev_hash_delete_all(mtev_hash_table *h, NoitHashFreeFunc keyfree,
                          NoitHashFreeFunc datafree) {
  if (!h) return;
  for (uint32_t n = 0; n < h->size; n++) {
    if (keyfree && h->entries[n].key) keyfree((void *)h->entries[n].key);
    if (datafree && h->entries[n].data) datafree(h->entries[n].data);
  }
  h->size = 0;
  if (h->mask) memset(h->index, 0, ((size_t)h->mask + 1) * sizeof(*h->index));
}

void mtev_hash_destroy(mtev_hash_table *h, NoitHashFreeFunc keyfree,
                       NoitHashFreeFunc datafree) {
  if (!h) return;
  mtev_hash_delete_all(h, keyfree, datafree);
  free(h->entries);
  free(h->index);
  memset(h, 0, sizeof(*h));
}

int mtev_hash_size(mtev_hash_table *h) { return h ? (int)h->size : 0; }

void mtev_hash_merge_as_dict(mtev_hash_table *dst, mtev_hash_table *src) {
  if (!dst || !src) return;
  for (uint32_t n = 0; n < src->size; n++) {
    const struct mtev_hash_entry *en = &src->entries[n];
    char *k = strndup(en->key, (size_t)en->klen);
    char *v = en->data ? strdup(en->data) : NULL;
    if (!k || (en->data && !v) ||
        !mtev_hash_replace(dst, k, en->klen, v, free, free)) {
      free(k);
      free(v);
    }
  }
}

int mtev_hash_adv(mtev_hash_table *h, mtev_hash_iter *it) {
  if (!h || !it || it->pos >= h->size) return 0;
  const struct mtev_hash_entry *en = &h->entries[it->pos++];
  it->key.str = en->key;
  it->klen = en->klen;
  it->value.ptr = en->data;
  return 1;
}

int mtev_hash_next(mtev_hash_table *h, mtev_hash_iter *it, const char **k,
                   int *klen, void **data) {
  if (!mtev_hash_adv(h, it)) return 0;
  if (k) *k = it->key.str;
  if (klen) *klen = it->klen;
  if (data) *data = it->value.ptr;
  return 1;
}

int mtev_hash_next_str(mtev_hash_table *h, mtev_hash_iter *it, const char **k,
                       int *klen, const char **dstr) {
  void *d;
  if (!mtev_hash_next(h, it, k, klen, &d)) return 0;
  if (dstr) *dstr = d;
  return 1;
}
