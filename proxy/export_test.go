package proxy

import "testing"

// QuietPanics keeps the panics a test provokes off standard error until
// the test ends (the external tests cannot reach logPanic).
func QuietPanics(t testing.TB) {
	orig := logPanic
	logPanic = func(any) {}
	t.Cleanup(func() { logPanic = orig })
}
