/*
 * test_conf.c - mtev_conf: lookups and ancestor inheritance, key/value set
 * merging (ancestors and explicit inherit), includes, every load error
 * (with its file and line), the <eventer><config> section, require_env.
 */
#include "acotest.h"
#include "eventer.h"
#include "mtev_conf.h"

#include <sys/stat.h>

static char dir[256];

static const char *mkfile(const char *name, const char *content) {
  static char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  T_CHECK(f);
  fputs(content, f);
  fclose(f);
  return path;
}

static void setup(void) {
  if (!dir[0]) {
    snprintf(dir, sizeof(dir), "/tmp/test_conf.XXXXXX");
    T_CHECK(mkdtemp(dir));
  }
  mtev_conf_init("app");
}

static char *str(mtev_conf_section_t s, const char *path) {
  static char buf[256];
  char *v = NULL;
  if (!mtev_conf_get_string(s, path, &v)) return NULL;
  snprintf(buf, sizeof(buf), "%s", v);
  free(v);
  return buf;
}

/* libmtev's inheritance example: attributes and <config> sets flow down */
static const char *inherit_xml =
    "<?xml version=\"1.0\"?>\n"
    "<app>\n"
    "  <a foo=\"bar\">\n"
    "    <config><key1>val a 1</key1><key2>val a 2</key2></config>\n"
    "    <b quux=\"baz\">\n"
    "      <config><key1>val b 1</key1><key3>val b 3</key3></config>\n"
    "      <c foo=\"meme\"/>\n"
    "    </b>\n"
    "  </a>\n"
    "</app>\n";

static void test_attribute_inheritance(void) {
  setup();
  char err[512];
  T_EQ(mtev_conf_load_ex(mkfile("inherit.conf", inherit_xml), err, sizeof(err)), 0);
  T_STR_EQ(err, "");
  mtev_conf_section_t a = mtev_conf_get_section(MTEV_CONF_ROOT, "/app/a");
  mtev_conf_section_t b = mtev_conf_get_section(MTEV_CONF_ROOT, "/app/a/b");
  mtev_conf_section_t c = mtev_conf_get_section(MTEV_CONF_ROOT, "//c");
  T_CHECK(!mtev_conf_section_is_empty(a) && !mtev_conf_section_is_empty(c));
  const char *foo = "ancestor-or-self::node()/@foo";
  const char *quux = "ancestor-or-self::node()/@quux";
  T_STR_EQ(str(a, foo), "bar");
  T_STR_EQ(str(b, foo), "bar");  /* inherited */
  T_STR_EQ(str(c, foo), "meme"); /* its own wins */
  T_CHECK(str(a, quux) == NULL);
  T_STR_EQ(str(b, quux), "baz");
  T_STR_EQ(str(c, quux), "baz");
  /* the key/value sets */
  mtev_hash_table *h = mtev_conf_get_hash(a, "config");
  T_EQ(mtev_hash_size(h), 2);
  T_STR_EQ(mtev_hash_dict_get(h, "key1"), "val a 1");
  mtev_hash_destroy(h, free, free);
  free(h);
  h = mtev_conf_get_hash(c, "config");
  T_EQ(mtev_hash_size(h), 3);
  T_STR_EQ(mtev_hash_dict_get(h, "key1"), "val b 1");
  T_STR_EQ(mtev_hash_dict_get(h, "key2"), "val a 2");
  T_STR_EQ(mtev_hash_dict_get(h, "key3"), "val b 3");
  mtev_hash_destroy(h, free, free);
  free(h);
  /* nothing there: an empty set, an empty section */
  h = mtev_conf_get_hash(c, "nosuch");
  T_CHECK(h && mtev_hash_size(h) == 0);
  mtev_hash_destroy(h, free, free);
  free(h);
  T_CHECK(mtev_conf_section_is_empty(mtev_conf_get_section(MTEV_CONF_ROOT, "/app/zz")));
  T_CHECK(!mtev_conf_section_is_empty(MTEV_CONF_ROOT));
  T_CHECK(str(MTEV_CONF_EMPTY, "/app/a/@foo") == NULL);
  /* locations name file and line */
  char loc[512];
  mtev_conf_section_location(c, loc, sizeof(loc));
  T_CHECK(strstr(loc, "inherit.conf:7"));
  /* sections in document order */
  int cnt = 0;
  mtev_conf_section_t *all = mtev_conf_get_sections(MTEV_CONF_ROOT, "//config", &cnt);
  T_EQ(cnt, 2);
  mtev_conf_release_sections(all, cnt);
  all = mtev_conf_get_sections(MTEV_CONF_ROOT, "//nothing", &cnt);
  T_CHECK(all == NULL && cnt == 0);
  /* an invalid expression is "not found", not a crash */
  T_CHECK(str(a, "///[[") == NULL);
  char *fn = mtev_conf_config_filename();
  T_CHECK(fn && strstr(fn, "inherit.conf"));
  free(fn);
  mtev_conf_fini();
  T_CHECK(str(MTEV_CONF_ROOT, "/app/a/@foo") == NULL);
}

static void test_explicit_inherit(void) {
  setup();
  static const char *xml =
      "<app>\n"
      "  <config name=\"A\">\n"
      "    <key1>a</key1><key2>b</key2><key3>c</key3>\n"
      "    <config name=\"C\" inherit=\"bob\">\n"
      "      <key1>AAA</key1><key4>DDD</key4>\n"
      "    </config>\n"
      "  </config>\n"
      "  <x><y><z><config name=\"B\" id=\"bob\">\n"
      "    <key2>bobB</key2><key5>bobE</key5>\n"
      "  </config></z></y></x>\n"
      "  <loop><config id=\"p\" inherit=\"q\"><k>p</k></config>"
      "<config id=\"q\" inherit=\"p\"><k>q</k></config></loop>\n"
      "</app>\n";
  char err[512];
  T_EQ(mtev_conf_load_string(xml, "complex.conf", err, sizeof(err)), 0);
  mtev_conf_section_t c = mtev_conf_get_section(MTEV_CONF_ROOT, "//config[@name='C']");
  /* the sets that are C or its ancestors: A, then C (with what C inherits
   * from bob after A's keys) */
  mtev_hash_table *h = mtev_conf_get_hash(c, "self::config");
  T_STR_EQ(mtev_hash_dict_get(h, "key1"), "AAA");
  T_STR_EQ(mtev_hash_dict_get(h, "key2"), "bobB");
  T_STR_EQ(mtev_hash_dict_get(h, "key3"), "c");
  T_STR_EQ(mtev_hash_dict_get(h, "key4"), "DDD");
  T_STR_EQ(mtev_hash_dict_get(h, "key5"), "bobE");
  T_EQ(mtev_hash_size(h), 5);
  mtev_hash_destroy(h, free, free);
  free(h);
  /* a cycle of inherits ends (logged), it does not hang */
  mtev_conf_section_t p = mtev_conf_get_section(MTEV_CONF_ROOT, "//config[@id='p']");
  h = mtev_conf_get_hash(p, "self::config");
  T_STR_EQ(mtev_hash_dict_get(h, "k"), "p");
  mtev_hash_destroy(h, free, free);
  free(h);
  mtev_conf_fini();
}

static void test_values(void) {
  setup();
  static const char *xml =
      "<app n=\"42\" neg=\"-7\" hex=\"0x1f\" big=\"99999999999\" bad=\"12x\"\n"
      "     sp=\" 5 \" t=\"On\" f=\"no\" nb=\"maybe\" d=\"2.5\" s=\"hello\">\n"
      "  <v>text</v>\n"
      "</app>\n";
  T_EQ(mtev_conf_load_string(xml, "values.conf", NULL, 0), 0);
  mtev_conf_section_t r = mtev_conf_get_section(MTEV_CONF_ROOT, "/app");
  int32_t i32 = -1;
  int64_t i64 = -1;
  uint32_t u32 = 0;
  int i = 0;
  T_EQ(mtev_conf_get_int32(r, "@n", &i32), 1);
  T_EQ(i32, 42);
  T_EQ(mtev_conf_get_int(r, "@neg", &i), 1);
  T_EQ(i, -7);
  T_EQ(mtev_conf_get_int32(r, "@hex", &i32), 1);
  T_EQ(i32, 31);
  T_EQ(mtev_conf_get_int32(r, "@sp", &i32), 1);
  T_EQ(i32, 5);
  i32 = 123;
  T_EQ(mtev_conf_get_int32(r, "@big", &i32), 0); /* out of range */
  T_EQ(i32, 123);                                /* untouched */
  T_EQ(mtev_conf_get_int64(r, "@big", &i64), 1);
  T_EQ(i64, 99999999999ll);
  T_EQ(mtev_conf_get_int32(r, "@bad", &i32), 0);
  T_EQ(mtev_conf_get_uint32(r, "@neg", &u32), 0);
  T_EQ(mtev_conf_get_int32(r, "@missing", &i32), 0);
  mtev_boolean b = mtev_false;
  T_EQ(mtev_conf_get_boolean(r, "@t", &b), 1);
  T_EQ(b, mtev_true);
  T_EQ(mtev_conf_get_boolean(r, "@f", &b), 1);
  T_EQ(b, mtev_false);
  T_EQ(mtev_conf_get_boolean(r, "@nb", &b), 0);
  double d = 0;
  T_EQ(mtev_conf_get_double(r, "@d", &d), 1);
  T_CHECK(d == 2.5);
  T_EQ(mtev_conf_get_double(r, "@s", &d), 0);
  char buf[6];
  T_EQ(mtev_conf_get_stringbuf(r, "@s", buf, sizeof(buf)), 1);
  T_STR_EQ(buf, "hello");
  T_EQ(mtev_conf_get_stringbuf(r, "@s", buf, 5), 0); /* does not fit */
  T_STR_EQ(str(r, "v"), "text");
  T_STR_EQ(str(r, "count(v)"), "1");       /* XPath numbers */
  T_STR_EQ(str(r, "string(@s)"), "hello"); /* and strings */
  T_EQ(mtev_conf_string_to_boolean("yes"), mtev_true);
  T_EQ(mtev_conf_string_to_boolean("nope"), mtev_false);
  T_EQ(mtev_conf_string_to_int32("-12"), -12);
  T_EQ(mtev_conf_string_to_int32("x"), 0);
  mtev_conf_fini();
}

static void test_includes(void) {
  setup();
  mkdir(strcat(strcpy((char[512]){0}, dir), "/sub"), 0755);
  mkfile("sub/listeners.conf",
         "<whatever>\n"
         "  <listeners>\n"
         "    <listener port=\"1\"/>\n"
         "    <include file=\"deeper.conf\" snippet=\"true\"/>\n"
         "  </listeners>\n"
         "</whatever>\n");
  mkfile("sub/deeper.conf",
         "<?xml version=\"1.0\"?>\n"
         "<listener port=\"2\"/>\n"
         "<listener port=\"3\"/>\n");
  const char *main_conf = mkfile("main.conf",
                                 "<app>\n"
                                 "  <include file=\"sub/listeners.conf\"/>\n"
                                 "</app>\n");
  char err[512];
  T_EQ(mtev_conf_load_ex(main_conf, err, sizeof(err)), 0);
  int cnt = 0;
  mtev_conf_section_t *ls =
      mtev_conf_get_sections(MTEV_CONF_ROOT, "/app/include/listeners//listener", &cnt);
  T_EQ(cnt, 3);
  char loc[512];
  T_STR_EQ(str(ls[0], "@port"), "1");
  T_CHECK(strstr(mtev_conf_section_location(ls[0], loc, sizeof(loc)),
                 "sub/listeners.conf:3"));
  T_STR_EQ(str(ls[2], "@port"), "3");
  T_CHECK(strstr(mtev_conf_section_location(ls[2], loc, sizeof(loc)),
                 "sub/deeper.conf:3"));
  mtev_conf_release_sections(ls, cnt);
  mtev_conf_fini();
}

/* Every load error: -1, errno, and a message with the file (and line). */
static void expect_load_error(const char *path, int err_no, const char *want1,
                              const char *want2) {
  char err[1024];
  errno = 0;
  T_EQ(mtev_conf_load_ex(path, err, sizeof(err)), -1);
  T_CHECKF(errno == err_no, "errno %d (%s), want %d; message: %s", errno,
           strerror(errno), err_no, err);
  T_CHECKF(strstr(err, want1), "message \"%s\" lacks \"%s\"", err, want1);
  if (want2) T_CHECKF(strstr(err, want2), "message \"%s\" lacks \"%s\"", err, want2);
}

static void test_load_errors(void) {
  setup();
  char p[512];
  snprintf(p, sizeof(p), "%s/nosuch.conf", dir);
  expect_load_error(p, ENOENT, "nosuch.conf", "No such file");
  expect_load_error(dir, EISDIR, dir, NULL);
  expect_load_error(mkfile("bad.conf", "<app>\n  <a>\n  </b>\n</app>\n"), EINVAL,
                    "bad.conf:3", "malformed XML");
  expect_load_error(mkfile("empty.conf", ""), EINVAL, "empty.conf", "empty");
  expect_load_error(mkfile("root.conf", "<other/>\n"), EINVAL, "root.conf:1",
                    "<other>");
  expect_load_error(mkfile("inc.conf", "<app>\n\n  <include file=\"gone.conf\"/>\n</app>\n"),
                    ENOENT, "inc.conf:3", "gone.conf");
  mkfile("badinc.conf", "<x>\n<y>\n</x>\n");
  expect_load_error(mkfile("inc2.conf", "<app><include file=\"badinc.conf\"/></app>\n"),
                    EINVAL, "inc2.conf:1", "badinc.conf:3");
  expect_load_error(mkfile("self.conf", "<app><include file=\"self.conf\"/></app>\n"),
                    EINVAL, "self.conf:1", "nested");
  expect_load_error(mkfile("snip.conf", "<app><include file=\"x\" snippet=\"sure\"/></app>"),
                    EINVAL, "snip.conf:1", "snippet");
  /* a failed load leaves the configuration loaded before in place */
  T_EQ(mtev_conf_load_string("<app keep=\"1\"/>", "keep.conf", NULL, 0), 0);
  expect_load_error(mkfile("bad2.conf", "<app"), EINVAL, "bad2.conf", NULL);
  T_STR_EQ(str(MTEV_CONF_ROOT, "/app/@keep"), "1");
  /* any root is fine without an application name */
  mtev_conf_init(NULL);
  T_EQ(mtev_conf_load_string("<other a=\"b\"/>", "other.conf", NULL, 0), 0);
  T_STR_EQ(str(MTEV_CONF_ROOT, "/other/@a"), "b");
  mtev_conf_init("app");
  mtev_conf_fini();
}

static void test_eventer_section(void) {
  setup();
  const char *good = mkfile("ev.conf",
                            "<app>\n"
                            "  <eventer>\n"
                            "    <config>\n"
                            "      <concurrency> 3 </concurrency>\n"
                            "      <loop_io>2</loop_io>\n"
                            "    </config>\n"
                            "  </eventer>\n"
                            "</app>\n");
  T_EQ(mtev_conf_load(good), 0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_concurrency(), 3);
  T_CHECK(eventer_pool("io"));
  T_EQ(eventer_pool_concurrency(eventer_pool("io")), 2);
  /* after eventer_init the section can no longer take effect: EBUSY */
  expect_load_error(good, EBUSY, "ev.conf:4", "already initialized");
  eventer_fini();
  /* an unknown setting is a warning, as in libmtev: the rest applies */
  char err[256];
  T_EQ(mtev_conf_load_ex(mkfile("ev2.conf",
                                "<app><eventer><config>\n"
                                "<no_such_setting>1</no_such_setting>\n"
                                "<concurrency>2</concurrency>\n"
                                "</config></eventer></app>\n"),
                         err, sizeof(err)),
       0);
  T_EQ(eventer_init_external(), 0);
  T_EQ(eventer_loop_concurrency(), 2);
  eventer_fini();
  expect_load_error(mkfile("ev3.conf",
                           "<app><eventer><config>\n"
                           "<concurrency>lots</concurrency>\n"
                           "</config></eventer></app>\n"),
                    EINVAL, "ev3.conf:2", "concurrency");
  eventer_init_external(); /* reset the settings the failed loads made */
  eventer_fini();
  mtev_conf_fini();
}

static void test_env_off(void) {
  setup();
  static const char *xml =
      "<app>\n"
      "  <g require_env=\"TEST_CONF_ENV_A\">\n"
      "    <a/>\n"
      "    <b require_env=\"!TEST_CONF_ENV_A\"/>\n"
      "    <c require_env=\"TEST_CONF_ENV_A=x\"/>\n"
      "    <d require_env=\"TEST_CONF_ENV_A!=x\"/>\n"
      "  </g>\n"
      "  <e/>\n"
      "</app>\n";
  T_EQ(mtev_conf_load_string(xml, "env.conf", NULL, 0), 0);
  mtev_conf_section_t a = mtev_conf_get_section(MTEV_CONF_ROOT, "//a");
  mtev_conf_section_t b = mtev_conf_get_section(MTEV_CONF_ROOT, "//b");
  mtev_conf_section_t c = mtev_conf_get_section(MTEV_CONF_ROOT, "//c");
  mtev_conf_section_t d = mtev_conf_get_section(MTEV_CONF_ROOT, "//d");
  mtev_conf_section_t e = mtev_conf_get_section(MTEV_CONF_ROOT, "//e");
  unsetenv("TEST_CONF_ENV_A");
  T_EQ(mtev_conf_env_off(a, NULL), mtev_true); /* inherited requirement */
  T_EQ(mtev_conf_env_off(b, NULL), mtev_false);
  T_EQ(mtev_conf_env_off(e, NULL), mtev_false);
  setenv("TEST_CONF_ENV_A", "x", 1);
  T_EQ(mtev_conf_env_off(a, NULL), mtev_false);
  T_EQ(mtev_conf_env_off(b, NULL), mtev_true);
  T_EQ(mtev_conf_env_off(c, NULL), mtev_false);
  T_EQ(mtev_conf_env_off(d, NULL), mtev_true);
  setenv("TEST_CONF_ENV_A", "y", 1);
  T_EQ(mtev_conf_env_off(c, NULL), mtev_true);
  T_EQ(mtev_conf_env_off(d, NULL), mtev_false);
  unsetenv("TEST_CONF_ENV_A");
  mtev_conf_fini();
}

T_MAIN({"attribute_inheritance", test_attribute_inheritance},
       {"explicit_inherit", test_explicit_inherit},
       {"values", test_values},
       {"includes", test_includes},
       {"load_errors", test_load_errors},
       {"eventer_section", test_eventer_section},
       {"env_off", test_env_off})
