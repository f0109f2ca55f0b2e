/*
 * test_hash.c - mtev_hash: store/replace/set/delete, binary keys,
 * insertion-ordered iteration, growth, the dict helpers.
 */
#include "acotest.h"
#include "mtev_hash.h"

static int freed_keys, freed_vals;
static void count_key(void *p) { freed_keys++, free(p); }
static void count_val(void *p) { freed_vals++, free(p); }

static void test_store_retrieve(void) {
  mtev_hash_table h = MTEV_HASH_EMPTY;
  int a = 1, b = 2;
  void *v = NULL;
  T_EQ(mtev_hash_size(&h), 0);
  T_EQ(mtev_hash_retrieve(&h, "a", 1, &v), 0);
  T_EQ(mtev_hash_store(&h, "a", 1, &a), 1);
  T_EQ(mtev_hash_store(&h, "a", 1, &b), 0); /* present: unchanged */
  T_EQ(mtev_hash_retrieve(&h, "a", 1, &v), 1);
  T_PTR_EQ(v, &a);
  /* keys are (pointer, length): a prefix is another key, NULs count */
  T_EQ(mtev_hash_store(&h, "ab", 1, &b), 0);
  T_EQ(mtev_hash_store(&h, "a\0b", 3, &b), 1);
  T_EQ(mtev_hash_retrieve(&h, "a\0b", 3, &v), 1);
  T_PTR_EQ(v, &b);
  T_EQ(mtev_hash_store(&h, "", 0, &b), 1); /* the empty key */
  T_EQ(mtev_hash_retrieve(&h, "", 0, &v), 1);
  T_EQ(mtev_hash_size(&h), 3);
  T_EQ(mtev_hash_delete(&h, "a", 1, NULL, NULL), 1);
  T_EQ(mtev_hash_delete(&h, "a", 1, NULL, NULL), 0);
  T_EQ(mtev_hash_retrieve(&h, "a", 1, &v), 0);
  T_EQ(mtev_hash_retrieve(&h, "a\0b", 3, &v), 1); /* the others survive */
  T_EQ(mtev_hash_size(&h), 2);
  mtev_hash_destroy(&h, NULL, NULL);
  T_EQ(mtev_hash_size(&h), 0);
  /* bad arguments are refused, not crashes */
  T_EQ(mtev_hash_store(NULL, "a", 1, &a), 0);
  T_EQ(mtev_hash_store(&h, "a", -1, &a), 0);
  T_EQ(mtev_hash_retrieve(NULL, "a", 1, &v), 0);
  T_EQ(mtev_hash_size(NULL), 0);
}

static void test_replace_set_free(void) {
  mtev_hash_table h;
  mtev_hash_init(&h);
  freed_keys = freed_vals = 0;
  T_EQ(mtev_hash_replace(&h, strdup("k"), 1, strdup("v1"), count_key, count_val), 1);
  T_EQ(mtev_hash_replace(&h, strdup("k"), 1, strdup("v2"), count_key, count_val), 1);
  T_EQ(freed_keys, 1); /* the replaced entry's key and value */
  T_EQ(freed_vals, 1);
  T_STR_EQ(mtev_hash_dict_get(&h, "k"), "v2");
  char *ok = NULL;
  void *od = NULL;
  char *nk = strdup("k");
  T_EQ(mtev_hash_set(&h, nk, 1, strdup("v3"), &ok, &od), 1);
  T_CHECK(ok && od);
  T_STR_EQ(od, "v2");
  free(ok);
  free(od);
  T_EQ(mtev_hash_set(&h, strdup("new"), 3, strdup("n"), &ok, &od), 1);
  T_CHECK(ok == NULL && od == NULL);
  mtev_hash_destroy(&h, count_key, count_val);
  T_EQ(freed_keys, 3);
  T_EQ(freed_vals, 3);
  T_CHECK(mtev_hash_dict_get(&h, "k") == NULL);
  T_CHECK(mtev_hash_dict_get(NULL, "k") == NULL);
}

static void test_growth_and_order(void) {
  mtev_hash_table h = MTEV_HASH_EMPTY;
  enum { N = 5000 };
  char *keys[N];
  for (int i = 0; i < N; i++) {
    char b[32];
    snprintf(b, sizeof(b), "key-%d", i);
    keys[i] = strdup(b);
    T_EQ(mtev_hash_store(&h, keys[i], (int)strlen(keys[i]), (void *)(intptr_t)i), 1);
  }
  T_EQ(mtev_hash_size(&h), N);
  for (int i = 0; i < N; i++) {
    void *v;
    T_EQ(mtev_hash_retrieve(&h, keys[i], (int)strlen(keys[i]), &v), 1);
    T_EQ((intptr_t)v, i);
  }
  /* every third key goes; order of the rest is insertion order */
  for (int i = 0; i < N; i += 3)
    T_EQ(mtev_hash_delete(&h, keys[i], (int)strlen(keys[i]), NULL, NULL), 1);
  mtev_hash_iter it = MTEV_HASH_ITER_ZERO;
  int want = 1, seen = 0;
  while (mtev_hash_adv(&h, &it)) {
    if (want % 3 == 0) want++;
    T_EQ((intptr_t)it.value.ptr, want);
    T_EQ(it.klen, (int)strlen(keys[want]));
    T_CHECK(!memcmp(it.key.str, keys[want], (size_t)it.klen));
    want++;
    seen++;
  }
  T_EQ(seen, N - (N + 2) / 3);
  /* the older iteration forms agree */
  mtev_hash_iter it2 = MTEV_HASH_ITER_ZERO;
  const char *k;
  int klen;
  void *d;
  int n2 = 0;
  while (mtev_hash_next(&h, &it2, &k, &klen, &d)) n2++;
  T_EQ(n2, seen);
  mtev_hash_delete_all(&h, NULL, NULL);
  T_EQ(mtev_hash_size(&h), 0);
  T_EQ(mtev_hash_store(&h, "again", 5, NULL), 1); /* usable after delete_all */
  mtev_hash_destroy(&h, NULL, NULL);
  for (int i = 0; i < N; i++) free(keys[i]);
}

static void test_merge_as_dict(void) {
  mtev_hash_table src = MTEV_HASH_EMPTY, dst = MTEV_HASH_EMPTY;
  mtev_hash_store(&src, "a", 1, "1");
  mtev_hash_store(&src, "b", 1, "2");
  mtev_hash_replace(&dst, strdup("b"), 1, strdup("old"), free, free);
  mtev_hash_replace(&dst, strdup("c"), 1, strdup("3"), free, free);
  mtev_hash_merge_as_dict(&dst, &src);
  T_EQ(mtev_hash_size(&dst), 3);
  T_STR_EQ(mtev_hash_dict_get(&dst, "a"), "1");
  T_STR_EQ(mtev_hash_dict_get(&dst, "b"), "2");
  T_STR_EQ(mtev_hash_dict_get(&dst, "c"), "3");
  const char *s;
  T_EQ(mtev_hash_retr_str(&dst, "a", 1, &s), 1);
  T_STR_EQ(s, "1");
  mtev_hash_iter it = MTEV_HASH_ITER_ZERO;
  const char *k, *v;
  int klen;
  T_EQ(mtev_hash_next_str(&dst, &it, &k, &klen, &v), 1);
  T_STR_EQ(v, "2"); /* b was first in dst: replaced in place */
  mtev_hash_destroy(&src, NULL, NULL);
  mtev_hash_destroy(&dst, free, free);
}

T_MAIN({"store_retrieve", test_store_retrieve},
       {"replace_set_free", test_replace_set_free},
       {"growth_and_order", test_growth_and_order},
       {"merge_as_dict", test_merge_as_dict})
