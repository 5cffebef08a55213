// Package nodelock serializes the e2e packages that change node-wide
// state (the proxy's ip rule and local route, sysctls, bpffs mounts):
// `go test ./...` runs packages in parallel, and two of them adding and
// removing the same ip rule would break each other's redirects.
package nodelock

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Path is the lock file; under /run so that a reboot clears it.
const Path = "/run/portcullis-e2e.lock"

// Acquire blocks until this process holds the node lock and returns the
// function that releases it. The kernel releases it too if the process
// dies, so a killed test never leaves it held.
func Acquire() (release func(), err error) {
	f, err := os.OpenFile(Path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the e2e node lock %s: %w", Path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", Path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}

// RunTests runs the package's tests and exits with their status, under the
// node lock when root (without root the tests that change the node skip).
func RunTests(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	release, err := Acquire()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	release()
	os.Exit(code)
}
