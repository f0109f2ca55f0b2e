//go:build eventer_testhooks

package eventer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/acoeventer/eventer/cgo"
)

// One configuration names a C and a Go aco function (one registry); each
// listener's connections run their own, with their own <config>.
func TestListenerInitCAndGoAcoFunctions(t *testing.T) {
	cgo.RegisterCAcoFunction("c_greeter")
	if err := RegisterAcoFunction("go_greeter", func(co *Co, ae *AcoEvent) {
		g, ok := ae.Acceptor().Config("greeting")
		if !ok {
			g = "-"
		}
		buf := make([]byte, 64)
		for {
			if _, err := ae.Read(buf, 0); err != nil {
				return
			}
			ae.Write([]byte("go:"+g+"\n"), time.Second)
		}
	}); err != nil {
		t.Fatal(err)
	}
	conf := func(p []int) {
		loadConf(t, fmt.Sprintf(`<app>
  <listeners>
    <config><greeting>shared</greeting></config>
    <listener type="c_greeter" address="127.0.0.1" port="%d">
      <config><greeting>from C</greeting></config>
    </listener>
    <listener type="go_greeter" address="127.0.0.1" port="%d"/>
  </listeners>
</app>`, p[0], p[1]))
	}
	ports := []int{freePort(t), freePort(t)}
	conf(ports)
	setup(t, 2)
	ports = listenerInitFree(t, "app", ports, conf)
	pc, pg := ports[0], ports[1]
	for _, tc := range []struct {
		port int
		want string
	}{{pc, "c:from C\n"}, {pg, "go:shared\n"}, {pc, "c:from C\n"}} {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tc.port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "hi\n")
		got, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got != tc.want {
			t.Fatalf("port %d: %q %v, want %q", tc.port, got, err, tc.want)
		}
	}
	ls := Listeners()
	if len(ls) != 2 || ls[0].Type() != "c_greeter" || ls[1].Type() != "go_greeter" {
		t.Fatalf("listeners %v", ls)
	}
	for _, l := range ls {
		waitFor(t, "the connections to end", func() bool { return l.Stats().Active == 0 })
		if s := l.Stats(); s.Accepted == 0 {
			t.Fatalf("%v: %+v", l.Addr(), s)
		}
	}
}
