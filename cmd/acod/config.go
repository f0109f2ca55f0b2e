package main

import (
	"strings"
	"text/template"
)

// defaultConfig is acod's configuration when -config names none: libmtev's
// format (the listener attributes and <config> keys are described in
// csrc/listener/mtev_listener.h).  A service is one more <listener> whose
// type is registered (RegisterAcoFunction, or a C type) before
// ListenerInit; keys under <listeners><config> reach every listener.
//
// The acod listener serves the seed's line protocol (type "acod", see
// serve); its <config> may say bye_timeout (ms of silence before "bye!";
// the -idle flag wins, else 10 s).  With -addr the protocol moves to that
// address (ListenAco), and the default acod listener is left out.
var defaultConfig = template.Must(template.New("acod.conf").Parse(`<?xml version="1.0" encoding="utf-8"?>
<acod>
  <eventer>
    <config>
      <!-- concurrency: one loop per CPU unless -loops says -->
    </config>
  </eventer>
  <listeners backlog="1024" fanout="on" accept_thread="on">
    <config>
      <no_delay>on</no_delay>
    </config>
{{- if .Acod}}
    <listener type="acod" address="127.0.0.1" port="9999"/>
{{- end}}
  </listeners>
</acod>
`))

// builtinConfig is defaultConfig with (acod true) or without the acod
// listener on 127.0.0.1:9999.
func builtinConfig(acod bool) string {
	var b strings.Builder
	if err := defaultConfig.Execute(&b, struct{ Acod bool }{acod}); err != nil {
		panic(err) // the template is ours
	}
	return b.String()
}
