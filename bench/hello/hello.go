// Package hello is the benchmarks' "hello" REST rule, served by Go
// handlers on the eventer's C HTTP engine: bench/http's goserver (plain
// HTTP) and bench/tls's gorest (HTTPS) register the same rule.
package hello

import (
	"fmt"
	"net/http"

	"github.com/acoeventer/eventer"
)

// Body is what GET /hello answers, as text/plain.
const Body = "Hello world.\n"

// Register registers GET /hello (after RestInit).  mode "aco": a NewRule
// rule with SetAco(true), the seed's hello handler (without its one-second
// job) as a Go coroutine on the loop; "http": an ordinary net/http
// handler through HandleHTTP, run in a worker goroutine.
func Register(mode string) error {
	switch mode {
	case "aco":
		r, err := eventer.NewRule("GET", "/", "^hello$", func(rc *eventer.RestClosure) error {
			res := rc.Response()
			res.Ok("text/plain")
			res.WriteString(Body)
			return res.End()
		})
		if err != nil {
			return err
		}
		r.SetAco(true)
		return nil
	case "http":
		_, err := eventer.HandleHTTP("GET", "/", "^hello$", http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte(Body))
			}))
		return err
	default:
		return fmt.Errorf("hello: mode %q: aco or http", mode)
	}
}
