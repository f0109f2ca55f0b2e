# rest_hello_check.sh - the checks shared by the seed's REST example in C
# (examples/c/rest_hello.check) and in Go (examples/go/rest_hello/rest_hello.check).
# The caller defines start CONF (runs the server in the background, sets
# pid, stderr to $tmp/err), then calls rest_hello_check NAME CONF_TEMPLATE;
# it leaves a one-line summary in $summary.
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "${name:-rest_hello}: $*" >&2
  echo "--- stderr:" >&2; cat "$tmp/err" >&2 || true
  exit 1
}

rest_hello_check() {
  name=$1
  local conf_in=$2
  command -v curl >/dev/null || fail "curl is not installed"
  go build -o "$tmp/httpcheck" ./examples/go/httpcheck || fail "cannot build examples/go/httpcheck"
  # a port below the ephemeral range that nothing listens on (another one
  # if the server finds it taken after all)
  local up=""
  for _ in 1 2 3 4 5; do
    port=""
    for p in $(shuf -i 10000-32000 -n 50); do
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
    done
    [ -n "$port" ] || fail "no free port"
    sed "s/port=\"8888\"/port=\"$port\"/" "$conf_in" >"$tmp/rest_hello.conf"
    grep -q "port=\"$port\"" "$tmp/rest_hello.conf" || fail "could not set the port"
    : >"$tmp/err"
    start "$tmp/rest_hello.conf"
    for _ in $(seq 200); do
      if curl -s -o /dev/null "http://127.0.0.1:$port/fast"; then up=1; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    [ -n "$up" ] && break
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  done
  [ -n "$up" ] || fail "not serving on 127.0.0.1:$port"
  local base="http://127.0.0.1:$port"

  # curl: /hello while /fast requests go on
  curl -sS -o "$tmp/hello.body" -w '%{http_code} %{content_type} %{time_total}\n' \
    "$base/hello" >"$tmp/hello.meta" &
  local cpid=$!
  sleep 0.2
  local worst=0
  for i in 1 2 3 4 5; do
    local t
    t=$(curl -sS -o /dev/null -w '%{time_total}' "$base/fast")
    worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
    # one /fast answered while /hello waits shows it (five curl runs in
    # a row outlasted /hello's second at nice 19 on a loaded machine)
    [ "$i" = 1 ] && { kill -0 "$cpid" 2>/dev/null || fail "/hello answered before a /fast request was done"; }
  done
  wait "$cpid" || fail "curl /hello failed"
  read -r code ctype took <"$tmp/hello.meta"
  [ "$code" = 200 ] || fail "curl /hello: status $code"
  [ "$ctype" = text/plain ] || fail "curl /hello: Content-Type $ctype"
  [ "$(od -An -c "$tmp/hello.body" | tr -s ' ')" = " H e l l o w o r l d . \n" ] ||
    fail "curl /hello: body $(od -An -c "$tmp/hello.body")"
  awk -v t="$took" 'BEGIN { exit !(t >= 1.0) }' || fail "curl /hello after ${took} s, before 1 s"
  # (well within the second /hello's job sleeps; 0.1 s was a speed bound
  # a loaded machine could miss)
  awk -v t="$worst" 'BEGIN { exit !(t < 0.5) }' || fail "curl /fast took ${worst} s while /hello waited"

  # ten at once: each in its own coroutine, its job on the default queue
  # (max(4, CPUs) threads: three rounds of 1 s on two CPUs, 3.65 s seen
  # at load 18); one after another would take 10 s
  local t0 t1
  t0=$(date +%s%N)
  local cps=()
  for i in $(seq 10); do curl -sS -o "$tmp/many.$i" "$base/hello" & cps+=($!); done
  wait "${cps[@]}"
  t1=$(date +%s%N)
  for i in $(seq 10); do [ "$(cat "$tmp/many.$i")" = "Hello world." ] || fail "concurrent /hello $i"; done
  local ms=$(( (t1 - t0) / 1000000 ))
  [ "$ms" -lt 9000 ] || fail "ten /hello at once took $ms ms"

  # Go's net/http client
  local goline
  goline=$("$tmp/httpcheck" "$base/hello" "$base/fast") || fail "net/http check failed"

  kill -0 "$pid" 2>/dev/null || fail "the server died"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  summary="curl: hello 200 text/plain after ${took} s, /fast within ${worst} s meanwhile, ten at once in ${ms} ms; $goline"
}
