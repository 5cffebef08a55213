package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/localcluster"
)

// CurlResult is what curl did, as a user sees it.
type CurlResult struct {
	// Exit is curl's exit status (0 ok, 7 connection refused/reset, 28
	// timeout, 52 empty reply, 56 receive failure).
	Exit int
	// Code is the HTTP status (0 without a response).
	Code   int
	Body   string
	Stderr string
}

func (r CurlResult) String() string {
	if r.Exit != 0 {
		return fmt.Sprintf("curl exit %d (%s)", r.Exit, strings.TrimSpace(r.Stderr))
	}
	return fmt.Sprintf("HTTP %d %q", r.Code, r.Body)
}

// Curl runs the real curl in pod with args (the URL among them), with a
// 2 s connect timeout and 5 s in all.
func Curl(t testing.TB, pod *localcluster.Pod, args ...string) CurlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	const mark = "\nportcullis-e2e "
	argv := append([]string{"curl", "-sS", "--connect-timeout", "2", "--max-time", "5",
		"--write-out", "%{stderr}" + mark + "%{http_code}\n"}, args...)
	cmd := pod.CommandContext(ctx, argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var r CurlResult
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running curl: %v", err)
		}
		r.Exit = ee.ExitCode()
	}
	r.Body = out.String()
	stderr := errb.String()
	if i := strings.LastIndex(stderr, mark); i >= 0 {
		r.Code, _ = strconv.Atoi(strings.TrimSpace(stderr[i+len(mark):]))
		stderr = stderr[:i]
	}
	r.Stderr = stderr
	return r
}
