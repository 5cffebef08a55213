package monitor

import (
	"testing"
	"time"
)

func TestHubFansOutAndCountsLoss(t *testing.T) {
	h := NewHub()
	fast := h.Subscribe(8)
	slow := h.Subscribe(1)
	for i := 0; i < 3; i++ {
		h.Publish(Event{Type: TypePolicyVerdict, Verdict: VerdictDropped, Time: time.Unix(int64(i), 0)})
	}
	for i := 0; i < 3; i++ {
		e := <-fast.C
		if e.Time.Unix() != int64(i) {
			t.Fatalf("fast subscriber got event %d out of order: %v", i, e.Time)
		}
	}
	if got := slow.Lost(); got != 2 {
		t.Fatalf("slow subscriber lost %d events, want 2", got)
	}
	slow.Close()
	slow.Close()
	if _, ok := <-slow.C; !ok {
		t.Fatal("the buffered event should still be readable after Close")
	}
	if _, ok := <-slow.C; ok {
		t.Fatal("C must be closed after Close")
	}
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("subscribers = %d after one Close, want 1", n)
	}
	h.Publish(Event{}) // must not panic on the closed subscription
	var nilHub *Hub
	nilHub.Publish(Event{})
}
