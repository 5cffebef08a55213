package proxy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis.dev/portcullis/monitor"
)

// Metrics are the proxy's Prometheus metrics, fed from its access events.
type Metrics struct {
	// Requests counts requests (and refused connections) by L7 protocol
	// and verdict: portcullis_proxy_requests_total{protocol,verdict}.
	Requests *prometheus.CounterVec
	// Duration observes the latency of requests that reached a verdict
	// with a measured latency: portcullis_proxy_request_duration_seconds{protocol}.
	Duration *prometheus.HistogramVec
	// Refused counts the requests and connections the proxy refused to
	// protect itself (not by policy), by monitor.L7.Refused:
	// portcullis_proxy_refused_total{reason}.
	Refused *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered). Metrics already registered there (an agent started twice
// in one process) are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_proxy_requests_total",
			Help: "Requests judged by the L7 proxy (and connections it refused), by protocol and verdict.",
		}, []string{"protocol", "verdict"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_proxy_request_duration_seconds",
			Help:    "Time from a request's first byte to its response's headers, through the L7 proxy, by protocol.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"protocol"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_proxy_refused_total",
			Help: "Requests and connections the L7 proxy refused to protect itself (header or body timeouts, oversized heads, connection limit, HTTP/2 abuse), by reason.",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := register(reg, &m.Requests); err != nil {
		return nil, err
	}
	if err := register(reg, &m.Duration); err != nil {
		return nil, err
	}
	if err := register(reg, &m.Refused); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers *c on reg, or takes the collector already registered
// there under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	if err := reg.Register(*c); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return err
		}
		*c = are.ExistingCollector.(C)
	}
	return nil
}

// Observe counts one event. Events without an L7 part are not counted.
func (m *Metrics) Observe(e monitor.Event) {
	if m == nil || e.L7 == nil {
		return
	}
	proto := e.L7.Protocol
	if proto == "" {
		proto = "unknown"
	}
	m.Requests.WithLabelValues(proto, e.Verdict).Inc()
	if e.L7.Refused != "" {
		m.Refused.WithLabelValues(e.L7.Refused).Inc()
	}
	if e.L7.Latency > 0 {
		m.Duration.WithLabelValues(proto).Observe(e.L7.Latency.Seconds())
	}
}
