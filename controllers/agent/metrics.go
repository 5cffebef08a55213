package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// Verdicts counts the datapath's verdict events: drops (per packet),
	// redirects, audits and allowed flows (FORWARDED, once per new flow).
	Verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_policy_verdicts_total",
		Help: "Policy verdict events from the datapath, by direction, protocol and verdict.",
	}, []string{"direction", "protocol", "verdict"})
	// MapPressure is the fill ratio of a BPF map.
	MapPressure = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portcullis_bpf_map_pressure",
		Help: "Used entries divided by capacity of a BPF map.",
	}, []string{"map"})
	// EndpointStates counts local endpoints by lifecycle state.
	EndpointStates = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portcullis_endpoints",
		Help: "Local endpoints by lifecycle state.",
	}, []string{"state"})
	// FQDNLearned counts what the DNS proxy's answers taught for
	// toFQDNs: distinct names and addresses (over the endpoints).
	FQDNLearned = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portcullis_fqdn_learned",
		Help: "Names and addresses learned from DNS answers for toFQDNs selectors (kind: names or addresses).",
	}, []string{"kind"})
	lockdowns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portcullis_endpoint_lockdowns_total",
		Help: "Times an endpoint was put in lockdown because its policy did not fit in the policy map.",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Verdicts, MapPressure, EndpointStates, FQDNLearned, lockdowns)
}

func (a *Agent) updateGaugesLocked() {
	used, capacity := a.dp.PolicyEntries()
	if capacity > 0 {
		MapPressure.WithLabelValues("policy").Set(float64(used) / float64(capacity))
	}
	counts := map[string]int{StateWaitingForIdentity: 0, StateRegenerating: 0, StateReady: 0, StateDisconnecting: 0, StateLockdown: 0}
	for _, e := range a.endpoints {
		counts[e.State]++
	}
	for s, n := range counts {
		EndpointStates.WithLabelValues(s).Set(float64(n))
	}
}

// VerdictCount reads portcullis_policy_verdicts_total for one label set.
func VerdictCount(direction, protocol, verdict string) float64 {
	var m dto.Metric
	if err := Verdicts.WithLabelValues(direction, protocol, verdict).Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// LockdownCount reads portcullis_endpoint_lockdowns_total.
func LockdownCount() float64 {
	var m dto.Metric
	if err := lockdowns.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
