#!/usr/bin/env bash
# curl_test.sh MODE SERVER [tls] - Debian's curl against the HTTP engine
# (http_demo_server).  Exits non-zero on the first failure.  With tls the
# server listens with ssl on (a CA and a server certificate made here by
# the openssl command; no key is kept) and every check runs over HTTPS
# with curl --cacert, plus: ALPN selects http/1.1, and plaintext HTTP sent
# to the HTTPS port is closed with one log line naming the peer.
set -u
mode=$1 bin=$2 tls=${3:-}
tmp=$(mktemp -d)
trap 'exec 3>&-; wait 2>/dev/null; rm -rf "$tmp"' EXIT
if [ -n "$tls" ]; then mode=$mode/https; fi
fail() { echo "FAIL [curl/$mode] $*"; exit 1; }

args=()
if [ -n "$tls" ]; then
  (
    cd "$tmp" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.pem -days 1 -subj "/CN=curl_test CA" &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout srv.key -out srv.csr -subj "/CN=127.0.0.1" &&
      printf 'subjectAltName=IP:127.0.0.1\n' >ext &&
      openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out srv.pem -days 1 -extfile ext
  ) >"$tmp/openssl.log" 2>&1 || fail "openssl: $(cat "$tmp/openssl.log")"
  args=(tls "$tmp/srv.pem" "$tmp/srv.key")
fi

mkfifo "$tmp/in"
"$bin" "${args[@]}" <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec 3>"$tmp/in" # the server stops when this closes
for _ in $(seq 100); do grep -q '^port ' "$tmp/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^port //p' "$tmp/out")
[ -n "$port" ] || fail "server did not start: $(cat "$tmp/err")"
url=http://127.0.0.1:$port
c() { curl -sS --max-time 20 "$@"; }
if [ -n "$tls" ]; then
  url=https://127.0.0.1:$port
  c() { curl -sS --max-time 20 --cacert "$tmp/ca.pem" "$@"; }
  # ALPN: curl offers h2 and http/1.1; the engine selects http/1.1
  c -v -o /dev/null "$url/fast" 2>"$tmp/alpn" || fail "https /fast: $(cat "$tmp/alpn")"
  grep -q 'ALPN: server accepted http/1.1' "$tmp/alpn" || fail "ALPN: $(grep -i alpn "$tmp/alpn")"
  # plaintext HTTP to the HTTPS port: closed, one line in the log
  : >"$tmp/err.before"; cp "$tmp/err" "$tmp/err.before"
  curl -sS --max-time 10 -o /dev/null "http://127.0.0.1:$port/fast" 2>/dev/null &&
    fail "plaintext HTTP answered on the HTTPS port"
  for _ in $(seq 50); do [ "$(wc -l <"$tmp/err")" -gt "$(wc -l <"$tmp/err.before")" ] && break; sleep 0.1; done
  sleep 0.2
  new=$(diff "$tmp/err.before" "$tmp/err" | grep -c '^>')
  [ "$new" = 1 ] || fail "plaintext: $new log lines: $(diff "$tmp/err.before" "$tmp/err")"
  diff "$tmp/err.before" "$tmp/err" | grep -q 'TLS accept from 127.0.0.1:[0-9]*.*failed' ||
    fail "plaintext: the log line does not name the peer: $(tail -1 "$tmp/err")"
  c -o /dev/null "$url/fast" || fail "https after a plaintext client"
fi

# the seed's example: 200 "Hello world." after >= 1 s, while another
# request is answered at once
c -o "$tmp/hello" -w '%{http_code} %{time_total}\n' "$url/hello" >"$tmp/hello.meta" &
hello=$!
sleep 0.2
fast=$(c -w ' %{time_total}' "$url/fast") || fail "/fast"
read -r body ft <<<"$fast"
[ "$body" = fast ] || fail "/fast body '$body'"
awk -v t="$ft" 'BEGIN { exit !(t < 0.5) }' || fail "/fast took $ft s during /hello"
wait $hello || fail "/hello"
read -r code ht <"$tmp/hello.meta"
[ "$code" = 200 ] || fail "/hello status $code"
[ "$(cat "$tmp/hello")" = "Hello world." ] || fail "/hello body"
awk -v t="$ht" 'BEGIN { exit !(t >= 1.0) }' || fail "/hello took $ht s"
c -D - -o /dev/null "$url/hello" | grep -qi '^content-type: text/plain' || fail "/hello type"

# uploads: Content-Length (curl asks 100-continue for 3 MiB), chunked, PUT
head -c 3145728 /dev/urandom >"$tmp/body"
want="3145728 $(gzip -c "$tmp/body" | tail -c8 | head -c4 | od -An -tx4 | tr -d ' \n')"
got=$(c --data-binary @"$tmp/body" "$url/upload") || fail "POST /upload"
[ "$got" = "$want" ] || fail "POST /upload: '$got', want '$want'"
got=$(c -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/body" "$url/upload") ||
  fail "chunked POST /upload"
[ "$got" = "$want" ] || fail "chunked POST /upload: '$got', want '$want'"
got=$(c -T "$tmp/body" "$url/upload") || fail "PUT /upload"
[ "$got" = "$want" ] || fail "PUT /upload: '$got', want '$want'"
c -v --data-binary @"$tmp/body" "$url/upload" 2>&1 >/dev/null |
  grep -q 'HTTP/1.1 100 Continue' || fail "no 100 Continue for a 3 MiB body"

# compression
seq 0 999 | sed 's/^/line /' >"$tmp/lines"
c --compressed -D "$tmp/gz.h" -o "$tmp/gz" "$url/gzip" || fail "/gzip"
grep -qi '^content-encoding: gzip' "$tmp/gz.h" || fail "/gzip not gzip-encoded"
cmp -s "$tmp/gz" "$tmp/lines" || fail "/gzip body"
c -H 'Accept-Encoding: deflate' -D "$tmp/df.h" -o "$tmp/df" "$url/gzip" || fail "/gzip deflate"
grep -qi '^content-encoding: deflate' "$tmp/df.h" || fail "/gzip not deflate-encoded"
c -D "$tmp/id.h" -o "$tmp/id" "$url/gzip" || fail "/gzip identity"
grep -qi '^content-encoding' "$tmp/id.h" && fail "/gzip encoded without Accept-Encoding"
cmp -s "$tmp/id" "$tmp/lines" || fail "/gzip identity body"

# streaming, HEAD, HTTP/1.0, query strings, statuses
c -D "$tmp/st.h" "$url/stream/100" >"$tmp/st" || fail "/stream"
grep -qi '^transfer-encoding: chunked' "$tmp/st.h" || fail "/stream not chunked"
[ "$(wc -l <"$tmp/st")" = 100 ] && [ "$(tail -1 "$tmp/st")" = "piece 99" ] || fail "/stream body"
c -I "$url/fast" | grep -qi '^content-length: 5' || fail "HEAD /fast"
[ "$(c --http1.0 "$url/fast")" = fast ] || fail "HTTP/1.0"
[ "$(c "$url/q?a=hello%20world&b=2")" = "a=hello world" ] || fail "query string"
[ "$(c -o /dev/null -w '%{http_code}' "$url/nothing")" = 404 ] || fail "404"
[ "$(c -o /dev/null -w '%{http_code}' -X DELETE "$url/fast")" = 405 ] || fail "405"
# keep-alive: three requests, one connection
n=$(c -v "$url/fast" "$url/fast" "$url/q?a=1" 2>&1 >/dev/null | grep -c 'Re-using existing connection')
[ "$n" = 2 ] || fail "keep-alive: $n reuses"

# a response given up after flushes (mtev_http_response_abort): curl
# reads the flushed lines, then fails with 18 (transfer closed with
# outstanding read data remaining); given up before anything, 52 (empty
# reply); the server goes on
c -o "$tmp/cut" "$url/cut/3" 2>"$tmp/cut.err"
rc=$?
[ $rc = 18 ] || fail "/cut/3: curl exit $rc, want 18: $(cat "$tmp/cut.err")"
[ "$(cat "$tmp/cut")" = "$(printf 'piece 0\npiece 1\npiece 2')" ] || fail "/cut/3 body: $(cat "$tmp/cut")"
c -o /dev/null "$url/cut/0" 2>"$tmp/cut.err"
rc=$?
[ $rc = 52 ] || fail "/cut/0: curl exit $rc, want 52: $(cat "$tmp/cut.err")"
[ "$(c "$url/fast")" = fast ] || fail "/fast after /cut"

exec 3>&-
wait $pid || fail "server exit $?: $(tail -20 "$tmp/err")"
extra=""
[ -n "$tls" ] && extra=", ALPN http/1.1, plaintext refused"
echo "ok   [curl/$mode] seed hello, uploads, 100-continue, gzip, deflate, chunked, HEAD, HTTP/1.0, keep-alive, cut responses$extra"
