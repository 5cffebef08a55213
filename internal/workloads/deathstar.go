package workloads

import (
	"fmt"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// Deathstar answers as the deathstar of Cilium's Star Wars demo:
// POST /v1/request-landing lands the ship (200 "Ship landed"),
// PUT /v1/exhaust-port blows it up (503 "Panic: deathstar exploded"),
// GET /v1/ lists the API; anything else is 404. It speaks HTTP/1.1 and
// HTTP/2 without TLS (h2c, with prior knowledge or by upgrade). seen, if
// not nil, is called with every request before it is answered.
func Deathstar(seen func(*http.Request)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/request-landing", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Ship landed")
	})
	mux.HandleFunc("PUT /v1/exhaust-port", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "Panic: deathstar exploded")
	})
	mux.HandleFunc("GET /v1/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"name":"Death Star","model":"DS-1 Orbital Battle Station","api":["GET /v1/","POST /v1/request-landing","PUT /v1/exhaust-port"]}`)
	})
	var h http.Handler = mux
	if seen != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen(r)
			mux.ServeHTTP(w, r)
		})
	}
	return h2c.NewHandler(h, &http2.Server{})
}
