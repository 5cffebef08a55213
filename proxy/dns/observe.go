package dns

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/proxy"
)

// DefaultHoldTimeout bounds how long an allowed answer is held while the
// Observer writes its addresses into the datapath: well under the 5 s
// after which stub resolvers retry, and far above the few milliseconds a
// write takes. An answer whose hold runs out is released anyway (its
// client's first connection may then be dropped) and counted.
const DefaultHoldTimeout = 500 * time.Millisecond

// Observation is what one allowed answer teaches: the addresses at the
// end of the CNAME chain from the question's name, for each name on the
// chain, learned by the client endpoint.
type Observation struct {
	// Endpoint is the client, a local endpoint; Identity its identity.
	Endpoint *proxy.Endpoint
	Identity policy.NumericIdentity
	// Names are the chain's names, lower case, without the trailing dot,
	// the question's name first.
	Names []string
	Addrs []netip.Addr
	// TTL is the smallest TTL of the address records.
	TTL time.Duration
}

// Observer learns the addresses of allowed answers before the client
// gets them: Observe returns once the policy that selects them (toFQDNs)
// is in force for the endpoint, or with ctx's error when the hold ran out.
// It reports the names whose addresses it took (those some toFQDNs
// selector of the endpoint matches). The agent is one: this is the DNS
// proxy's whole link to it besides the policy it reads, so the proxy can
// move into a process of its own.
type Observer interface {
	Observe(ctx context.Context, o Observation) (names []string, err error)
}

// Metrics are the DNS proxy's own metrics; queries are counted by the
// proxy's request metrics (protocol dns).
type Metrics struct {
	// Holds observes how long answers were held for the Observer:
	// portcullis_dns_hold_duration_seconds.
	Holds prometheus.Histogram
	// HoldTimeouts counts answers released because the hold ran out:
	// portcullis_dns_hold_timeouts_total.
	HoldTimeouts prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered); ones already registered there are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Holds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portcullis_dns_hold_duration_seconds",
			Help:    "Time DNS answers were held until the datapath allowed their addresses (toFQDNs).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		HoldTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_dns_hold_timeouts_total",
			Help: "DNS answers released before the datapath allowed their addresses, because the hold ran out.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.Holds); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return nil, err
		}
		m.Holds = are.ExistingCollector.(prometheus.Histogram)
	}
	if err := reg.Register(m.HoldTimeouts); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return nil, err
		}
		m.HoldTimeouts = are.ExistingCollector.(prometheus.Counter)
	}
	return m, nil
}
