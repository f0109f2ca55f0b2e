package main

import (
	"fmt"
	"net"
	"strconv"
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
//
// The http_rest_api listener (127.0.0.1:8080, or -http's address; none
// with -http off) is the C HTTP engine, named by RestInit: it serves
// GET /hello and GET /stats.json (http.go).
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
{{- if .HTTPHost}}
    <listener type="http_rest_api" address="{{.HTTPHost}}" port="{{.HTTPPort}}"/>
{{- end}}
  </listeners>
</acod>
`))

// defaultHTTP is the built-in HTTP listener's address.
const defaultHTTP = "127.0.0.1:8080"

// builtinConfig is defaultConfig with (acod true) or without the acod
// listener on 127.0.0.1:9999, and with an HTTP listener on httpAddr
// (host:port; "" for none).
func builtinConfig(acod bool, httpAddr string) (string, error) {
	v := struct {
		Acod               bool
		HTTPHost, HTTPPort string
	}{Acod: acod}
	if httpAddr != "" {
		host, port, err := net.SplitHostPort(httpAddr)
		if err != nil {
			return "", fmt.Errorf("-http %q: %w", httpAddr, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("-http %q: the port must be a number in 1..65535", httpAddr)
		}
		if ip := net.ParseIP(host); ip == nil {
			return "", fmt.Errorf("-http %q: the host must be an IP address", httpAddr)
		}
		v.HTTPHost, v.HTTPPort = host, port
	}
	var b strings.Builder
	if err := defaultConfig.Execute(&b, v); err != nil {
		panic(err) // the template is ours
	}
	return b.String(), nil
}
