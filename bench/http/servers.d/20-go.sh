# bench/http/run.sh plugin: Go handlers on the C engine (goserver).
#   go-aco         a NewRule rule with SetAco(true): the handler in a Go
#                  coroutine on the loop (a worker reused across requests)
#   go-handlehttp  a net/http handler through HandleHTTP: the handler in
#                  a worker goroutine (reused across requests)
scripts/cgo-stamp.sh
( cd bench/http && go build -o "$OUT/goserver" ./goserver )
CMD[go-aco]="$OUT/goserver -mode aco -addr {ADDR}"
CMD[go-handlehttp]="$OUT/goserver -mode http -addr {ADDR}"
ORDER+=(go-aco go-handlehttp)
