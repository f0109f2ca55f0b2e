/* bench/tls/https_client.c - the client of bench/tls/https_instr.sh: an
 * OpenSSL client of GET /hello over keep-alive TLS connections, in steps
 * its driver sets the pace of.
 *
 *   https_client PORT CONNS N
 *
 * Opens CONNS connections (each a handshake and one request), prints
 * "ready" and waits for a line on stdin; then makes N requests in rounds
 * (a request written on every connection, then every response read,
 * checked: status 200, exactly Content-Length bytes of body; N rounded
 * up to whole rounds), prints "done R" (R: the requests made) and waits for a line again.  CIPHERS: the TLS 1.3 suites it
 * offers, in its order (default OpenSSL's, as wrk offers them). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char req[256];
static int reqlen;

static void die(const char *m) {
  fprintf(stderr, "https_client: %s\n", m);
  ERR_print_errors_fp(stderr);
  exit(1);
}

/* Reads one response of s whole (one response in flight at a time). */
static void get(SSL *s) {
  char buf[4096];
  size_t have = 0, n;
  for (;;) {
    if (have == sizeof(buf) - 1) die("response too long");
    if (!SSL_read_ex(s, buf + have, sizeof(buf) - 1 - have, &n)) die("read");
    have += n;
    buf[have] = 0;
    char *e = strstr(buf, "\r\n\r\n");
    if (!e) continue;
    char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (!cl || cl > e) die("no Content-Length");
    size_t want = (size_t)(e + 4 - buf) + strtoul(cl + 17, NULL, 10);
    if (have < want) continue;
    if (have != want) die("bytes after the response");
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) die("not 200");
    return;
  }
}

static void wait_line(void) {
  char line[16];
  if (!fgets(line, sizeof(line), stdin)) exit(0);
}

int main(int argc, char **argv) {
  if (argc != 4) die("usage: https_client PORT CONNS N");
  int port = atoi(argv[1]), c = atoi(argv[2]);
  long n = atol(argv[3]);
  if (port <= 0 || port > 65535 || c <= 0 || n <= 0) die("bad arguments");
  reqlen = snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) die("SSL_CTX_new");
  const char *suites = getenv("CIPHERS");
  if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) die("CIPHERS");
  SSL **ss = calloc((size_t)c, sizeof(*ss));
  if (!ss) die("out of memory");
  for (int i = 0; i < c; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) die("socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) die("connect");
    ss[i] = SSL_new(ctx);
    if (!ss[i] || SSL_set_fd(ss[i], fd) != 1) die("SSL_new");
    if (SSL_connect(ss[i]) != 1) die("handshake");
    if (SSL_write(ss[i], req, reqlen) != reqlen) die("write");
    get(ss[i]);
  }
  fprintf(stderr, "https_client: %s %s\n", SSL_get_version(ss[0]),
          SSL_CIPHER_get_name(SSL_get_current_cipher(ss[0])));
  printf("ready\n");
  fflush(stdout);
  wait_line();
  long done = 0;
  for (; done < n; done += c) {
    for (int i = 0; i < c; i++)
      if (SSL_write(ss[i], req, reqlen) != reqlen) die("write");
    for (int i = 0; i < c; i++) get(ss[i]);
  }
  printf("done %ld\n", done);
  fflush(stdout);
  wait_line();
  return 0;
}
