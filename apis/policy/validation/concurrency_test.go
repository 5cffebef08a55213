package validation

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestValidateConcurrently shares the lazily built validators between
// goroutines; run with -race.
func TestValidateConcurrently(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "starwars-l3-l4-l7.yaml"))
	if err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		obj := decode(t, string(data))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if errs := Validate(obj); len(errs) > 0 {
					t.Errorf("Validate() errors:%s\nwant none", formatErrs(errs))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkValidate(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "starwars-l3-l4-l7.yaml"))
	if err != nil {
		b.Fatalf("reading fixture: %v", err)
	}
	obj := decode(b, string(data))
	Validate(obj) // build the validators outside the timing
	b.ResetTimer()
	for b.Loop() {
		if errs := Validate(obj); len(errs) > 0 {
			b.Fatalf("Validate() errors:%s", formatErrs(errs))
		}
	}
}
