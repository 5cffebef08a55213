package monitor

import (
	"sync"
	"sync/atomic"
)

// Hub fans events out to subscribers. Publish never blocks: a subscriber
// that does not keep up loses events (counted), so a slow `portcullis
// monitor` cannot stall the datapath reader or a proxy.
type Hub struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

// Subscription is one follower of a Hub.
type Subscription struct {
	// C delivers the events; it is closed by Close.
	C    <-chan Event
	c    chan Event
	hub  *Hub
	lost atomic.Uint64
	once sync.Once
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*Subscription]struct{}{}} }

// Subscribe adds a follower with a buffer of n events (at least 1).
func (h *Hub) Subscribe(n int) *Subscription {
	if n < 1 {
		n = 1
	}
	c := make(chan Event, n)
	s := &Subscription{C: c, c: c, hub: h}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Publish delivers e to every subscriber that has room. A nil hub drops it.
func (h *Hub) Publish(e Event) {
	if h == nil {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		select {
		case s.c <- e:
		default:
			s.lost.Add(1)
		}
	}
}

// Subscribers counts the current followers.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// Lost counts the events this subscriber missed because its buffer was full.
func (s *Subscription) Lost() uint64 { return s.lost.Load() }

// Close removes the subscription and closes C. It is idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.mu.Lock()
		delete(s.hub.subs, s)
		s.hub.mu.Unlock()
		close(s.c)
	})
}
