package proxy

import "testing"

// QuietPanics keeps the panics a test provokes off standard error until
// the test ends (the external tests cannot reach logPanic).
func QuietPanics(t testing.TB) {
	orig := logPanic
	logPanic = func(any) {}
	t.Cleanup(func() { logPanic = orig })
}

// Pending counts the connections that have not reported a first request
// (Started) yet.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, sl := range p.conns {
		if !sl.reclaimed && !sl.started.Load() {
			n++
		}
	}
	return n
}
