package proxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"portcullis.dev/portcullis/monitor"
)

// TestMetricsRegisterTwice: a second proxy on the same registry (an agent
// restarted in one process) shares the first one's metrics.
func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	m1.Observe(monitor.Event{Verdict: monitor.VerdictForwarded, L7: &monitor.L7{Protocol: "grpc", Latency: 2 * time.Millisecond}})
	m2.Observe(monitor.Event{Verdict: monitor.VerdictForwarded, L7: &monitor.L7{Protocol: "grpc", Latency: 3 * time.Millisecond}})
	m2.Observe(monitor.Event{Verdict: monitor.VerdictDenied, L7: &monitor.L7{Protocol: "grpc"}})
	m2.Observe(monitor.Event{Verdict: monitor.VerdictDropped}) // not an L7 event: not counted
	m2.Observe(monitor.Event{Verdict: monitor.VerdictError, L7: &monitor.L7{Protocol: "h2", Refused: "h2-abuse"}})
	var rm dto.Metric
	if err := m1.Refused.WithLabelValues("h2-abuse").Write(&rm); err != nil || rm.GetCounter().GetValue() != 1 {
		t.Errorf("refused{h2-abuse} = %v (%v), want 1", rm.GetCounter().GetValue(), err)
	}
	counter := func(verdict string) float64 {
		var m dto.Metric
		if err := m1.Requests.WithLabelValues("grpc", verdict).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	if got := counter("FORWARDED"); got != 2 {
		t.Errorf("forwarded = %v, want 2", got)
	}
	if got := counter("DENIED"); got != 1 {
		t.Errorf("denied = %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
		if mf.GetName() == "portcullis_proxy_request_duration_seconds" {
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 2 {
				t.Errorf("histogram count %d, want 2 (the denial had no latency)", c)
			}
		}
	}
	if series["portcullis_proxy_requests_total"] != 3 || series["portcullis_proxy_request_duration_seconds"] != 1 || series["portcullis_proxy_refused_total"] != 1 {
		t.Errorf("series %v", series)
	}
}
