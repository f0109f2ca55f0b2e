/*
 * test_listener_conf.c - mtev_listener_init from the XML configuration:
 * every attribute, resolved on the <listener> or inherited from an
 * ancestor, the merged <config>, the include path, require_env, and every
 * bad-configuration error (named with file and line; nothing is left
 * half-started).
 */
#include "ltest.h"
#include "mtev_conf.h"

#include <sys/stat.h>

static char dir[128];

static const char *write_conf(const char *name, const char *content) {
  static char path[256];
  if (!dir[0]) {
    snprintf(dir, sizeof(dir), "/tmp/test_listener_conf.XXXXXX");
    T_CHECK(mkdtemp(dir));
  }
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  T_CHECK(f);
  fputs(content, f);
  fclose(f);
  return path;
}

/* Replies "<value of the config key named by the line>@<pool>/<loop>". */
static void cfg_service(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  char key[64], out[256];
  int n = eventer_aco_read(e, key, sizeof(key) - 1, NULL);
  if (n > 0) {
    key[n] = 0;
    key[strcspn(key, "\r\n")] = 0;
    const char *v = mtev_hash_dict_get(mtev_acceptor_closure_config(ac), key);
    eventer_loop_t *lp = eventer_loop_current();
    int m = snprintf(out, sizeof(out), "%s@%s/%d\n", v ? v : "(none)",
                     eventer_pool_name(eventer_loop_pool(lp)), eventer_loop_index(lp));
    eventer_aco_write(e, out, (size_t)m, NULL);
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
}

static int classic_conf_cb(eventer_t e, int mask, void *closure,
                           struct timeval *now) {
  (void)mask, (void)now;
  int m;
  eventer_write(e, "classic\n", 8, &m);
  eventer_remove_fde(e);
  eventer_close(e, &m);
  mtev_acceptor_closure_free(closure);
  return 0;
}

static void register_types(void) {
  T_EQ(mtev_listener_register_aco_function("cfg", cfg_service), 0);
  T_EQ(mtev_listener_register_aco_function("seed", lt_seed_service), 0);
  T_EQ(eventer_name_callback("classic_conf", classic_conf_cb), 0);
}

/* Sends key, returns the reply line (static buffer). */
static const char *ask(int fd, const char *key) {
  static char buf[256];
  T_CHECK(fd >= 0);
  char line[80];
  snprintf(line, sizeof(line), "%s\n", key);
  lt_send(fd, line);
  size_t n = 0;
  while (n < sizeof(buf) - 1) {
    ssize_t r = recv(fd, buf + n, 1, 0);
    T_CHECKF(r == 1, "no reply for %s", key);
    if (buf[n] == '\n') break;
    n++;
  }
  buf[n] = 0;
  close(fd);
  return buf;
}

typedef struct {
  const char *name;
  mtev_listener_t *found;
} find_t;
static int find_cb(mtev_listener_t *l, void *c) {
  find_t *f = c;
  if (!strcmp(mtev_listener_get_name(l), f->name)) {
    mtev_listener_ref(l);
    f->found = l;
    return 1;
  }
  return 0;
}
/* The running listener with that name (a reference for the caller). */
static mtev_listener_t *find(const char *name) {
  find_t f = {name, NULL};
  mtev_listener_foreach(find_cb, &f);
  T_CHECKF(f.found, "no listener %s", name);
  return f.found;
}
static int count_cb(mtev_listener_t *l, void *c) {
  (void)l;
  (*(int *)c)++;
  return 0;
}
static int count_listeners(void) {
  int n = 0;
  mtev_listener_foreach(count_cb, &n);
  return n;
}

/* ---- every attribute, inherited or not --------------------------------------------- */

static int port[6];
static char sock[96];

static void body_attributes(void) {
  register_types();
  snprintf(sock, sizeof(sock), "/tmp/test_listener_conf.%d.sock", (int)getpid());
  char xml[4096];
  int tries = 0;
again: /* on fresh ports when one was taken before the bind */
  for (int i = 0; i < 6; i++) port[i] = lt_free_port();
  snprintf(xml, sizeof(xml),
           "<app>\n"
           "  <listeners type=\"cfg\" accept_thread=\"off\" backlog=\"16\">\n"
           "    <config><greeting>hi</greeting><timeout>1</timeout></config>\n"
           "    <group address=\"127.0.0.1\" fanout=\"on\">\n"
           "      <config><timeout>2</timeout></config>\n"
           "      <listener port=\"%d\"/>\n"
           "      <listener port=\"%d\" fanout_pool=\"io\" accept_thread=\"on\"\n"
           "                backlog=\"64\" max_connections=\"7\">\n"
           "        <config><timeout>3</timeout></config>\n"
           "      </listener>\n"
           "    </group>\n"
           "    <listener address=\"%s\"/>\n"
           "    <listener address=\"::1\" port=\"%d\" type=\"classic_conf\"/>\n"
           "    <listener address=\"127.0.0.1\" port=\"%d\"\n"
           "              require_env=\"TEST_LISTENER_CONF_UNSET\"/>\n"
           "  </listeners>\n"
           "  <include>\n"
           "    <listeners><listener type=\"seed\" address=\"127.0.0.1\" port=\"%d\"\n"
           "                         reuseport=\"on\"/></listeners>\n"
           "  </include>\n"
           "</app>\n",
           port[0], port[1], sock, port[2], port[3], port[4]);
  char err[1024];
  unsetenv("TEST_LISTENER_CONF_UNSET");
  T_EQ(mtev_conf_load_ex(write_conf("attrs.conf", xml), err, sizeof(err)), 0);
  if (mtev_listener_init_ex("app", err, sizeof(err)) != 0) {
    T_CHECKF(lt_port_taken(err) && ++tries < 10, "mtev_listener_init_ex: %s", err);
    goto again;
  }
  T_EQ(count_listeners(), 5); /* the require_env one is skipped */
  char name[64];
  /* port[0]: type, accept_thread, backlog from <listeners>; address and
   * fanout from <group>; <config> merged from both */
  snprintf(name, sizeof(name), "127.0.0.1:%d", port[0]);
  mtev_listener_t *l0 = find(name);
  mtev_listener_opts_t o;
  T_EQ(mtev_listener_get_opts(l0, &o), 0);
  T_STR_EQ(o.type, "cfg");
  T_EQ(o.backlog, 16);
  T_EQ(o.fanout, mtev_true);
  T_STR_EQ(o.fanout_pool, "default");
  T_EQ(o.accept_in_loop, mtev_true);
  T_EQ(o.reuseport, mtev_false);
  T_EQ(o.max_connections, 0);
  T_STR_EQ(ask(lt_connect_port(port[0]), "greeting"), "hi@default/1");
  T_STR_EQ(ask(lt_connect_port(port[0]), "timeout"), "2@default/2");
  /* port[1]: its own attributes and <config> win */
  snprintf(name, sizeof(name), "127.0.0.1:%d", port[1]);
  mtev_listener_t *l1 = find(name);
  T_EQ(mtev_listener_get_opts(l1, &o), 0);
  T_EQ(o.backlog, 64);
  T_STR_EQ(o.fanout_pool, "io");
  T_EQ(o.accept_in_loop, mtev_false);
  T_EQ(o.max_connections, 7);
  T_STR_EQ(ask(lt_connect_port(port[1]), "timeout"), "3@io/0");
  T_STR_EQ(ask(lt_connect_port(port[1]), "greeting"), "hi@io/1");
  /* AF_UNIX: inherits the type; the default address rules do not apply */
  mtev_listener_t *lu = find(sock);
  T_STR_EQ(ask(lt_connect(lu), "timeout"), "1@default/0");
  /* ::1, a classic callback named with eventer_name_callback */
  snprintf(name, sizeof(name), "[::1]:%d", port[2]);
  mtev_listener_t *l6 = find(name);
  struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6,
                             .sin6_port = htons((uint16_t)port[2]),
                             .sin6_addr = in6addr_loopback};
  int fd = lt_connect_sa((struct sockaddr *)&sa6, sizeof(sa6));
  lt_expect(fd, "classic\n", 0);
  close(fd);
  /* skipped by require_env: nothing listens there */
  T_CHECK(lt_connect_port(port[3]) < 0 && errno == ECONNREFUSED);
  /* from /app/include/listeners, with reuseport */
  snprintf(name, sizeof(name), "127.0.0.1:%d", port[4]);
  mtev_listener_t *li = find(name);
  T_EQ(mtev_listener_get_opts(li, &o), 0);
  T_EQ(o.reuseport, mtev_true);
  T_EQ(o.backlog, 5); /* libmtev's default */
  T_EQ(o.accept_in_loop, mtev_false); /* accept_thread defaults to on */
  fd = lt_connect_port(port[4]);
  lt_send(fd, "quit\n");
  lt_expect(fd, "quitter!\n", 0);
  close(fd);
  mtev_listener_release(l0);
  mtev_listener_release(l1);
  mtev_listener_release(lu);
  mtev_listener_release(l6);
  mtev_listener_release(li);
  /* the shutdown (lt_run) stops them all; the socket file goes too */
}

static void test_attributes(void) {
  lt_run_pool(3, "io", 2, body_attributes);
  struct stat st;
  T_CHECK(stat(sock, &st) != 0);
  mtev_conf_fini();
}

/* ---- bad configuration ------------------------------------------------------------------- */

static void expect_init_error(const char *file, const char *xml, int err_no,
                              const char *w1, const char *w2) {
  char err[2048];
  T_EQ(mtev_conf_load_ex(write_conf(file, xml), err, sizeof(err)), 0);
  errno = 0;
  T_EQ(mtev_listener_init_ex("app", err, sizeof(err)), -1);
  T_CHECKF(errno == err_no, "errno %s, want %s: %s", strerror(errno),
           strerror(err_no), err);
  T_CHECKF(strstr(err, w1), "\"%s\" lacks \"%s\"", err, w1);
  if (w2) T_CHECKF(strstr(err, w2), "\"%s\" lacks \"%s\"", err, w2);
  /* nothing half-started */
  T_EQ(count_listeners(), 0);
}

static void body_errors(void) {
  register_types();
  int good = lt_free_port(), p = lt_free_port();
  char xml[2048], want[128];
  /* an unknown type: named, with the registered ones */
  snprintf(xml, sizeof(xml),
           "<app><listeners>\n"
           "<listener type=\"cfg\" address=\"127.0.0.1\" port=\"%d\"/>\n"
           "<listener type=\"nope\" address=\"127.0.0.1\" port=\"%d\"/>\n"
           "</listeners></app>\n", good, p);
  expect_init_error("type.conf", xml, EINVAL, "type.conf:3", "\"nope\"");
  expect_init_error("type.conf", xml, EINVAL, "cfg, seed", "classic_conf");
  T_CHECK(lt_connect_port(good) < 0); /* the good one is not listening */
  /* no type at all */
  expect_init_error("notype.conf",
                    "<app><listeners>\n<listener port=\"1\"/></listeners></app>",
                    EINVAL, "notype.conf:2", "type");
  /* bad addresses and ports */
  expect_init_error("addr.conf",
                    "<app><listeners type=\"cfg\">\n"
                    "<listener address=\"1.2.3.4.5\" port=\"80\"/></listeners></app>",
                    EINVAL, "addr.conf:2", "\"1.2.3.4.5\"");
  expect_init_error("port.conf",
                    "<app><listeners type=\"cfg\">\n\n"
                    "<listener address=\"127.0.0.1\" port=\"http\"/></listeners></app>",
                    EINVAL, "port.conf:3", "\"http\"");
  expect_init_error("port0.conf",
                    "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
                    "<listener port=\"0\"/></listeners></app>",
                    EINVAL, "port0.conf:2", "1..65535");
  expect_init_error("portbig.conf",
                    "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
                    "<listener port=\"70000\"/></listeners></app>",
                    EINVAL, "portbig.conf:2", "70000");
  expect_init_error("noport.conf",
                    "<app><listeners type=\"cfg\">\n"
                    "<listener address=\"127.0.0.1\"/></listeners></app>",
                    EINVAL, "noport.conf:2", "no port");
  /* a port in use, named; the listener bound before it is closed again */
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  T_EQ(bind(holder, (struct sockaddr *)&sa, sizeof(sa)), 0);
  T_EQ(listen(holder, 1), 0);
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\"/>\n"
           "<listener port=\"%d\"/>\n"
           "</listeners></app>\n", good, p);
  snprintf(want, sizeof(want), "127.0.0.1:%d", p);
  expect_init_error("inuse.conf", xml, EADDRINUSE, "inuse.conf:3", want);
  expect_init_error("inuse.conf", xml, EADDRINUSE, "in use", NULL);
  T_CHECK(lt_connect_port(good) < 0);
  close(holder);
  /* two listeners on one address */
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\"/>\n"
           "<listener port=\"%d\"/>\n"
           "</listeners></app>\n", p, p);
  expect_init_error("twice.conf", xml, EADDRINUSE, "twice.conf:3", "another listener");
  T_CHECK(lt_connect_port(p) < 0);
  /* the rest of the attributes */
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\" fanout=\"on\" fanout_pool=\"nosuch\"/>\n"
           "</listeners></app>\n", p);
  expect_init_error("pool.conf", xml, EINVAL, "pool.conf:2", "nosuch");
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\" ssl=\"on\"/></listeners></app>\n", p);
  expect_init_error("ssl.conf", xml, EINVAL, "ssl.conf:2", "<sslconfig> with certificate_file");
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\" fanout=\"maybe\">\n"
           "<listener port=\"%d\"/></listeners></app>\n", p);
  expect_init_error("bool.conf", xml, EINVAL, "bool.conf:2", "fanout=\"maybe\"");
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\" backlog=\"-3\"/></listeners></app>\n", p);
  expect_init_error("backlog.conf", xml, EINVAL, "backlog.conf:2", "backlog");
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\" max_connections=\"lots\"/></listeners></app>\n", p);
  expect_init_error("max.conf", xml, EINVAL, "max.conf:2", "max_connections");
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"cfg\" address=\"127.0.0.1\">\n"
           "<config><idle_timeout>soon</idle_timeout></config>\n"
           "<listener port=\"%d\"/></listeners></app>\n", p);
  expect_init_error("idle.conf", xml, EINVAL, "idle.conf:3", "idle_timeout");
  /* the void form logs and starts nothing, as libmtev's */
  mtev_listener_init("app");
  T_EQ(count_listeners(), 0);
  /* the file itself: missing, malformed (the configuration loads first) */
  char err[1024];
  char path[256];
  snprintf(path, sizeof(path), "%s/none.conf", dir);
  T_EQ(mtev_conf_load_ex(path, err, sizeof(err)), -1);
  T_CHECK(strstr(err, "none.conf") && errno == ENOENT);
  T_EQ(mtev_conf_load_ex(write_conf("broken.conf", "<app><listeners>\n<listener>\n</app>"),
                         err, sizeof(err)), -1);
  T_CHECKF(strstr(err, "broken.conf:3"), "%s", err);
  /* a good one after all that */
  snprintf(xml, sizeof(xml),
           "<app><listeners type=\"seed\" address=\"127.0.0.1\">\n"
           "<listener port=\"%d\"/></listeners></app>\n", p);
  T_EQ(mtev_conf_load_ex(write_conf("ok.conf", xml), err, sizeof(err)), 0);
  mtev_listener_init("app");
  T_EQ(count_listeners(), 1);
  int fd = lt_connect_port(p);
  lt_send(fd, "quit\n");
  lt_expect(fd, "quitter!\n", 0);
  close(fd);
}

static void test_bad_configuration(void) {
  lt_run(2, body_errors);
  mtev_conf_fini();
}

T_MAIN({"attributes", test_attributes},
       {"bad_configuration", test_bad_configuration})
