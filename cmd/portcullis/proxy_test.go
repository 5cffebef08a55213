package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
)

// syncBuffer is a bytes.Buffer safe for the proxy's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deathstarServer is a real HTTP upstream answering every request with 200.
func deathstarServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "Ship landed\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

type runningProxy struct {
	stdout, stderr *syncBuffer
	addr, metrics  string
	stop           func() int
}

var listeningRE = regexp.MustCompile(`proxy listening on (\S+):`)
var metricsRE = regexp.MustCompile(`metrics on (http://\S+)`)

// startProxy runs `portcullis proxy` in-process until the test ends.
func startProxy(t *testing.T, args ...string) *runningProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningProxy{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	code := make(chan int, 1)
	go func() { code <- ExecuteContext(ctx, append([]string{"proxy"}, args...), rp.stdout, rp.stderr) }()
	var once sync.Once
	var rc int
	rp.stop = func() int {
		once.Do(func() { cancel(); rc = <-code })
		return rc
	}
	t.Cleanup(func() { rp.stop() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(rp.stderr.String()); m != nil {
			rp.addr = m[1]
			break
		}
		select {
		case c := <-code:
			t.Fatalf("proxy exited with %d: %s", c, rp.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not start: %s", rp.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := metricsRE.FindStringSubmatch(rp.stderr.String()); m != nil {
		rp.metrics = m[1]
	}
	return rp
}

// waitLines waits for n lines on the proxy's standard output.
func (rp *runningProxy) waitLines(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		out := rp.stdout.String()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if out != "" && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d access lines, got:\n%s", n, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func do(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// starwarsArgs proxies tiefighter → deathstar:80 (the upstream listens on
// another port: --dport says which port the policy sees).
func starwarsArgs(upstream string, more ...string) []string {
	args := []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", upstream,
		"--src", tiefighter, "--dst", deathstar, "--dport", "80"}
	return append(args, more...)
}

var (
	timeRE    = regexp.MustCompile(`^\S+ `)
	portRE    = regexp.MustCompile(`(default/src):\d+`)
	latencyRE = regexp.MustCompile(` \d+(\.\d+)?(µs|ms|s)( |$)`)
)

// normalize replaces what changes between runs in a text access line.
func normalize(line string) string {
	line = timeRE.ReplaceAllString(line, "TIME ")
	line = portRE.ReplaceAllString(line, "$1:PORT")
	return latencyRE.ReplaceAllString(line, " LATENCY$3")
}

// TestProxyStandalone sends real HTTP through `portcullis proxy` to a real
// upstream under the Star Wars policy: the landing request is forwarded,
// the exhaust port gets 403 from the proxy, and each has an access line.
func TestProxyStandalone(t *testing.T) {
	up := deathstarServer(t)
	rp := startProxy(t, starwarsArgs(strings.TrimPrefix(up.URL, "http://"), "--metrics-addr", "127.0.0.1:0")...)
	c := &http.Client{Timeout: 3 * time.Second}
	base := "http://" + rp.addr
	if code, body := do(t, c, "POST", base+"/v1/request-landing"); code != 200 || body != "Ship landed\n" {
		t.Errorf("request-landing: %d %q, want 200 from the upstream", code, body)
	}
	if code, body := do(t, c, "PUT", base+"/v1/exhaust-port"); code != 403 || body != "Access denied\r\n" {
		t.Errorf("exhaust-port: %d %q, want 403 %q", code, body, "Access denied\r\n")
	}
	lines := rp.waitLines(t, 2)
	var got strings.Builder
	for _, l := range lines {
		got.WriteString(normalize(l) + "\n")
	}
	golden(t, "proxy-starwars.golden", got.String())

	if rp.metrics == "" {
		t.Fatalf("no metrics address in %s", rp.stderr)
	}
	_, metrics := do(t, c, "GET", rp.metrics)
	for _, want := range []string{
		`portcullis_proxy_requests_total{protocol="http/1.1",verdict="FORWARDED"} 1`,
		`portcullis_proxy_requests_total{protocol="http/1.1",verdict="DENIED"} 1`,
		`portcullis_proxy_request_duration_seconds_count{protocol="http/1.1"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
	if code := rp.stop(); code != 0 {
		t.Errorf("exit %d: %s", code, rp.stderr)
	}
}

// TestProxyStandaloneJSON: -o json writes one monitor event per request.
func TestProxyStandaloneJSON(t *testing.T) {
	up := deathstarServer(t)
	rp := startProxy(t, starwarsArgs(strings.TrimPrefix(up.URL, "http://"), "-o", "json")...)
	c := &http.Client{Timeout: 3 * time.Second}
	do(t, c, "GET", "http://"+rp.addr+"/v1/")
	lines := rp.waitLines(t, 1)
	var e monitor.Event
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if e.Type != monitor.TypeL7 || e.Verdict != monitor.VerdictDenied || e.L7 == nil || e.L7.Status != 403 || e.L7.Method != "GET" ||
		e.Source.Pod != "src" || e.Destination.Pod != "dst" || e.Destination.Port != 80 || e.Direction != "ingress" {
		t.Errorf("event %s", lines[0])
	}
}

// TestProxyStandaloneL4Denied: a source the policy does not let connect
// at all is reset, with a DENIED line.
func TestProxyStandaloneL4Denied(t *testing.T) {
	up := deathstarServer(t)
	args := []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", strings.TrimPrefix(up.URL, "http://"),
		"--src", xwing, "--dst", deathstar, "--dport", "80"}
	rp := startProxy(t, args...)
	c := &http.Client{Timeout: 3 * time.Second}
	if resp, err := c.Get("http://" + rp.addr + "/v1/"); err == nil {
		resp.Body.Close()
		t.Fatalf("xwing got %s, want a reset", resp.Status)
	}
	lines := rp.waitLines(t, 1)
	if !strings.Contains(lines[0], " DENIED default/src:") || !strings.Contains(lines[0], "denied at L4 by the ingress policy of default/dst") {
		t.Errorf("line %q", lines[0])
	}
}

// TestProxyStandaloneMaxConnections: with --max-connections 1, a second
// connection while the first is open is refused with a line saying why.
func TestProxyStandaloneMaxConnections(t *testing.T) {
	up := deathstarServer(t)
	rp := startProxy(t, "--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", strings.TrimPrefix(up.URL, "http://"),
		"--src", tiefighter, "--dst", deathstar, "--dport", "80", "--max-connections", "1")
	first := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	if st, _ := do(t, first, "POST", "http://"+rp.addr+"/v1/request-landing"); st != 200 {
		t.Fatalf("first connection: %d", st)
	}
	second := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	req, _ := http.NewRequest("POST", "http://"+rp.addr+"/v1/request-landing", strings.NewReader("payload"))
	if resp, err := second.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("second connection got %s, want it refused", resp.Status)
	}
	lines := rp.waitLines(t, 2)
	if !strings.Contains(lines[1], "too many connections (limit 1)") {
		t.Errorf("line %q, want the refusal", lines[1])
	}
}

// TestProxyStandaloneEscapedSlashes: a path with %2F is refused with 400
// by default; with --escaped-slashes keep it is judged as it is (and
// denied by the Star Wars policy, which allows only the exact path).
func TestProxyStandaloneEscapedSlashes(t *testing.T) {
	up := deathstarServer(t)
	for _, tc := range []struct {
		flag string
		want int
	}{{"reject", 400}, {"keep", 403}} {
		rp := startProxy(t, starwarsArgs(strings.TrimPrefix(up.URL, "http://"), "--escaped-slashes", tc.flag)...)
		c := &http.Client{Timeout: 3 * time.Second}
		if code, body := do(t, c, "POST", "http://"+rp.addr+"/v1/request-landing%2Fx"); code != tc.want {
			t.Errorf("--escaped-slashes %s: %d %q, want %d", tc.flag, code, body, tc.want)
		}
		rp.stop()
	}
}

func TestProxyBadInput(t *testing.T) {
	up := "127.0.0.1:1"
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing flag", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter}, exitUsage, `required flag(s) "dst" not set`},
		{"bad upstream", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", "deathstar", "--src", tiefighter, "--dst", deathstar}, exitUsage, `--upstream: "deathstar" is not IP:PORT`},
		{"bad labels", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", "=x", "--dst", deathstar}, exitUsage, "--src:"},
		{"bad output", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter, "--dst", deathstar, "-o", "yaml"}, exitUsage, `unknown format "yaml"`},
		{"bad max connections", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter, "--dst", deathstar, "--max-connections", "0"}, exitUsage, "--max-connections: 0, want at least 1"},
		{"bad escaped slashes", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter, "--dst", deathstar, "--escaped-slashes", "decode"}, exitUsage, `--escaped-slashes: "decode", want reject or keep`},
		{"bad advertise", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter, "--dst", deathstar, "--advertise", ":0"}, exitUsage, `--advertise: ":0" has no host`},
		{"bad kafka bound", []string{"--policy", starwars, "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter, "--dst", deathstar, "--kafka-max-request-bytes", "0"}, exitUsage, "--kafka-max-request-bytes: 0, want at least 1"},
		{"missing file", []string{"--policy", "testdata/nope.yaml", "--listen", "127.0.0.1:0", "--upstream", up, "--src", tiefighter, "--dst", deathstar}, exitInput, "testdata/nope.yaml"},
		{"bad listen", []string{"--policy", starwars, "--listen", "127.0.0.1:99999", "--upstream", up, "--src", tiefighter, "--dst", deathstar}, exitInput, "--listen 127.0.0.1:99999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A command line that is wrongly accepted serves until the
			// context ends instead of hanging the test.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var out, errb syncBuffer
			code := ExecuteContext(ctx, append([]string{"proxy"}, tc.args...), &out, &errb)
			stdout, stderr := out.String(), errb.String()
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

// TestProxyBadPolicyFile: a policy file with an invalid field is named
// with its field, and nothing is served.
func TestProxyBadPolicyFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.yaml"
	writeTestFile(t, path, `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: bad, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: x}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCPX}]
`)
	_, stderr, code := run("proxy", "--policy", path, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--src", tiefighter, "--dst", deathstar)
	if code != exitInput || !strings.Contains(stderr, "bad.yaml") || !strings.Contains(stderr, "protocol") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "proxy listening") {
			t.Errorf("served despite a bad file")
		}
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The access log holds lines until its timer or its close: none is lost
// when the proxy stops between two flushes, and lines after the close go
// straight out.
func TestAccessLogFlushesOnClose(t *testing.T) {
	var out syncBuffer
	l := newAccessLog(&out, time.Hour)
	l.write("one\n")
	l.write("two\n")
	if got := out.String(); got != "" {
		t.Fatalf("written before a flush: %q", got)
	}
	l.close()
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after close: %q, want both lines", got)
	}
	l.write("late\n")
	l.close()
	if got := out.String(); got != "one\ntwo\nlate\n" {
		t.Fatalf("after a late line: %q", got)
	}
}

// The timer writes lines out while the proxy runs.
func TestAccessLogFlushesOnTimer(t *testing.T) {
	var out syncBuffer
	l := newAccessLog(&out, time.Millisecond)
	defer l.close()
	l.write("one\n")
	for deadline := time.Now().Add(5 * time.Second); out.String() == "" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := out.String(); got != "one\n" {
		t.Fatalf("got %q, want the line written by the timer", got)
	}
}
