package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentNotRunning: without an agent, the commands fail with status 1
// and say which socket they tried and that the agent is not running.
func TestAgentNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	for _, args := range [][]string{
		{"endpoint", "list", "--socket", sock},
		{"monitor", "--socket", sock},
		{"policy", "trace", "--live", "--socket", sock, "--src", "org=empire", "--dst", "org=empire", "--dport", "80"},
	} {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := ExecuteContext(ctx, args, &stdout, &stderr)
		cancel()
		if code != exitInput || stdout.Len() != 0 || !strings.Contains(stderr.String(), sock) || !strings.Contains(stderr.String(), "agent is not running") {
			t.Errorf("%v: status %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("a client created %s", sock)
	}
}
