package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
)

// accessDenied is the body of the proxy's HTTP 403.
const accessDenied = "Access denied\r\n"

// l7Row is one request of the L7 table: who asked what, what the policy
// says should happen, and what the client got.
type l7Row struct {
	client, request, want string
	// do makes the request and says what happened, in the same words as
	// want when it went as expected.
	do func() string
}

// startWorkload runs a server or client of internal/workloads in pod (this
// binary, re-executed there); teardown stops it.
func (d *demo) startWorkload(pod *localcluster.Pod, role string, args ...string) (*workloads.Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, err := workloads.Start(pod.Command(exe), role, args...)
	if err != nil {
		return nil, fmt.Errorf("%s in %s/%s: %w", role, pod.Namespace, pod.Name, err)
	}
	d.workloads = append(d.workloads, p)
	return p, nil
}

// l7Traffic runs real clients in the demo pods against real servers
// through the kernel's redirect and the agent's proxy, and prints a table
// of what each got: Star Wars over HTTP/1.1 and HTTP/2, the door manager
// over gRPC, the header rule, and a policy change under an open keep-alive
// connection. It fails if any result differs from the expected one.
func (d *demo) l7Traffic(ctx context.Context, kubectl string) error {
	pod := func(name string) (*localcluster.Pod, error) {
		if p := d.cluster.Pod("default", name); p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("no pod default/%s", name)
	}
	var deathstar, tiefighter, xwing, doorMgr, terminal *localcluster.Pod
	for _, x := range []struct {
		p    **localcluster.Pod
		name string
	}{{&deathstar, "deathstar"}, {&tiefighter, "tiefighter"}, {&xwing, "xwing"}, {&doorMgr, "cc-door-mgr"}, {&terminal, "public-terminal"}} {
		var err error
		if *x.p, err = pod(x.name); err != nil {
			return err
		}
	}
	if _, err := d.startWorkload(deathstar, workloads.RoleDeathstar, "0.0.0.0:80"); err != nil {
		return err
	}
	if _, err := d.startWorkload(doorMgr, workloads.RoleDoorManager, "0.0.0.0:50051"); err != nil {
		return err
	}
	ds := "http://" + serviceName("deathstar")
	door := serviceName("cc-door-server") + ":50051"
	fmt.Fprintf(d.out, "  servers: the deathstar (HTTP/1.1 and h2c) at %s, the door manager (gRPC) at %s\n", ds, door)
	fmt.Fprintf(d.out, "  clients: curl %s, and grpc-go (this binary) in the pods\n\n", curlVersion())

	mon, err := d.startMonitor(ctx, "--verdict", "FORWARDED,DENIED,ERROR")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "$ portcullis monitor --socket %s --verdict FORWARDED,DENIED,ERROR   (in the background)\n\n", d.agentRun.socket)

	grpcClient, err := d.startWorkload(terminal, workloads.RoleGRPCClient, door)
	if err != nil {
		return err
	}
	keepAlive, err := d.startWorkload(tiefighter, workloads.RoleHTTPClient)
	if err != nil {
		return err
	}

	curlRow := func(client *localcluster.Pod, want string, args ...string) l7Row {
		shown := make([]string, 0, len(args))
		for _, a := range args {
			shown = append(shown, strings.TrimPrefix(a, ds))
		}
		return l7Row{client: client.Name, request: "curl " + strings.Join(shown, " "), want: want, do: func() string {
			return curlIn(ctx, client, args...).String()
		}}
	}
	grpcRow := func(method, want string) l7Row {
		return l7Row{client: terminal.Name, request: "grpc " + workloads.DoorManagerPath(method), want: want, do: func() string {
			r, err := grpcClient.Do(workloads.Command{Method: method}, 10*time.Second)
			if err != nil {
				return err.Error()
			}
			if r.Code == "OK" {
				return "OK " + strconv.Quote(r.Reply)
			}
			return r.Code + ": " + r.Message
		}}
	}
	keepAliveRow := func(method, path, want string) l7Row {
		return l7Row{client: tiefighter.Name, request: "keep-alive " + method + " " + path, want: want, do: func() string {
			r, err := keepAlive.Do(workloads.Command{Method: method, URL: ds + path}, 10*time.Second)
			if err != nil {
				return err.Error()
			}
			if r.Error != "" {
				return "error: " + r.Error
			}
			return fmt.Sprintf("%d %s (connection #%d)", r.Status, short(r.Body), r.Conns)
		}}
	}

	const landed, denied, listing = "200 Ship landed", "403 Access denied", `200 {"name":"Death Star",...`
	h2 := "--http2-prior-knowledge"
	tables := []struct {
		title string
		rows  []l7Row
	}{
		{"Star Wars (examples/starwars): HTTP/1.1", []l7Row{
			curlRow(tiefighter, landed, "-X", "POST", ds+"/v1/request-landing"),
			curlRow(tiefighter, denied, "-X", "PUT", ds+"/v1/exhaust-port"),
			curlRow(xwing, "dropped (curl: timeout)", "-X", "POST", ds+"/v1/request-landing"),
		}},
		{"Star Wars: HTTP/2 with prior knowledge", []l7Row{
			curlRow(tiefighter, "HTTP/2 "+landed, h2, "-X", "POST", ds+"/v1/request-landing"),
			curlRow(tiefighter, "HTTP/2 "+denied, h2, "-X", "PUT", ds+"/v1/exhaust-port"),
		}},
		{"Door manager (examples/grpc): gRPC", []l7Row{
			grpcRow("GetName", `OK "Spaceport door #1"`),
			grpcRow("GetLocation", `OK "Cloud City, platform 327 (lat 10.3, long 20.4)"`),
			grpcRow("RequestMaintenance", `OK "true"`),
			grpcRow("SetAccessCode", "PermissionDenied: access denied by TrafficPolicy default/door-manager"),
			grpcRow("GetStatus", "PermissionDenied: access denied by TrafficPolicy default/door-manager"),
		}},
		{"Header rule (examples/headers): X-Token must match [0-9]+", []l7Row{
			curlRow(tiefighter, listing, "-H", "X-Token: 12345", ds+"/v1/"),
			curlRow(tiefighter, denied, "-H", "X-Token: 12a", ds+"/v1/"),
			curlRow(tiefighter, denied, ds+"/v1/"),
		}},
	}
	failures := 0
	for _, tb := range tables {
		failures += d.printRows(tb.title, tb.rows)
	}

	// A policy change while a keep-alive connection is open: the next
	// request on it is judged by the new policy.
	patch := func(method, path string) error {
		return d.kubectl(ctx, kubectl, "patch", "tp", "rule1", "-n", "default", "--type=json", "-p",
			fmt.Sprintf(`[{"op":"replace","path":"/spec/ingress/0/toPorts/0/rules/http","value":[{"method":%q,"path":%q}]}]`, method, path))
	}
	failures += d.printRows("Policy change under an open keep-alive connection (tiefighter → deathstar)", []l7Row{
		keepAliveRow("POST", "/v1/request-landing", landed+" (connection #1)"),
	})
	fmt.Fprintln(d.out, "  rule1 now allows GET /v1/ only:")
	if err := patch("GET", "/v1/"); err != nil {
		return err
	}
	failures += d.printRows("", []l7Row{
		keepAliveRow("POST", "/v1/request-landing", denied+" (connection #1)"),
		keepAliveRow("GET", "/v1/", listing+" (connection #1)"),
	})
	fmt.Fprintln(d.out, "  rule1 back as in examples/starwars:")
	if err := patch("POST", "/v1/request-landing"); err != nil {
		return err
	}
	failures += d.printRows("", []l7Row{
		keepAliveRow("POST", "/v1/request-landing", landed+" (connection #1)"),
	})

	// What the proxy reported: one line per request it judged.
	return d.checkMonitor(mon, "L7", "the proxy's L7 lines", l7Expected, failures, func(l string) bool {
		for _, proto := range []string{" http/1.1 ", " h2 ", " grpc "} {
			if strings.Contains(l, proto) {
				return true
			}
		}
		return false
	})
}

// checkMonitor stops mon, prints the lines it showed that keep selects
// (described by shown), and fails if a table had failures (results of
// the kind named by what) or a line of expected is missing.
func (d *demo) checkMonitor(mon *follower, what, shown string, expected []func(string) bool, failures int, keep func(string) bool) error {
	seen := mon.waitFor(3*time.Second, expected...)
	var lines []string
	for _, l := range strings.Split(mon.stop(), "\n") {
		if keep(l) {
			lines = append(lines, l)
		}
	}
	fmt.Fprintf(d.out, "  portcullis monitor showed (%s):\n%s\n", shown, indent(strings.Join(lines, "\n"), "  "))
	if failures > 0 {
		return fmt.Errorf("%d %s result(s) differ from the expected ones", failures, what)
	}
	if !seen {
		return fmt.Errorf("portcullis monitor did not show every expected %s verdict with its policy", what)
	}
	return nil
}

// l7Expected are lines `portcullis monitor` must show for l7Traffic.
var l7Expected = []func(string) bool{
	verdictLine(monitorExpect{Verdict: "FORWARDED", From: "tiefighter", Has: []string{"http/1.1 POST /v1/request-landing", "status=200"}}),
	verdictLine(monitorExpect{Verdict: "DENIED", From: "tiefighter", Has: []string{"http/1.1 PUT /v1/exhaust-port", "status=403", "TrafficPolicy default/rule1"}}),
	verdictLine(monitorExpect{Verdict: "DENIED", From: "tiefighter", Has: []string{"h2 PUT /v1/exhaust-port", "status=403"}}),
	verdictLine(monitorExpect{Verdict: "FORWARDED", From: "public-terminal", Has: []string{"grpc POST /cloudcity.DoorManager/GetName", "grpc-status=0"}}),
	verdictLine(monitorExpect{Verdict: "DENIED", From: "public-terminal", Has: []string{"grpc POST /cloudcity.DoorManager/SetAccessCode", "grpc-status=7", "TrafficPolicy default/door-manager"}}),
}

// printRows runs the rows and prints them as a table under title; it
// returns the number of mismatches. A row is retried for a few seconds
// until it gives the expected result: a policy reaches the proxy a sync
// after the apiserver has it.
func (d *demo) printRows(title string, rows []l7Row) int {
	if title != "" {
		fmt.Fprintf(d.out, "  %s\n", title)
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    CLIENT\tREQUEST\tEXPECTED\tGOT\t")
	failures := 0
	for _, r := range rows {
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for {
			got = r.do()
			if matches(got, r.want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		mark := "ok"
		if !matches(got, r.want) {
			mark = "<-- MISMATCH"
			failures++
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", r.client, r.request, r.want, got, mark)
	}
	_ = tw.Flush()
	fmt.Fprintln(d.out)
	return failures
}

// matches compares a result with the expectation; "..." in want stands
// for any text.
func matches(got, want string) bool {
	prefix, suffix, ok := strings.Cut(want, "...")
	if !ok {
		return got == want
	}
	return len(got) >= len(prefix)+len(suffix) && strings.HasPrefix(got, prefix) && strings.HasSuffix(got, suffix)
}

// curlResult is what curl did, as a user sees it.
type curlResult struct {
	exit    int
	code    int
	version string
	body    string
	stderr  string
}

// String is "[HTTP/2 ]<code> <start of the body>", or what went wrong.
func (r curlResult) String() string {
	switch {
	case r.exit == 28:
		return "dropped (curl: timeout)"
	case r.exit != 0:
		return fmt.Sprintf("curl exit %d: %s", r.exit, strings.TrimSpace(r.stderr))
	}
	s := fmt.Sprintf("%d %s", r.code, short(r.body))
	if r.version == "2" {
		s = "HTTP/2 " + s
	}
	return s
}

// short is the first line of a body, cut to fit in a table.
func short(body string) string {
	s := firstLine(body)
	if len(s) > 24 {
		s = s[:24] + "..."
	}
	return s
}

// firstLine is s up to its first line break.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSuffix(line, "\r")
}

// curlIn runs Debian's curl in pod.
func curlIn(ctx context.Context, pod *localcluster.Pod, args ...string) curlResult {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	argv := append([]string{"curl", "-sS", "--connect-timeout", "2", "--max-time", "5",
		"--write-out", "%{stderr}\ndemo-curl %{http_code} %{http_version}\n"}, args...)
	cmd := pod.CommandContext(ctx, argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var r curlResult
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return curlResult{exit: -1, stderr: err.Error()}
		}
		r.exit = ee.ExitCode()
	}
	r.body = out.String()
	stderr := errb.String()
	if i := strings.LastIndex(stderr, "\ndemo-curl "); i >= 0 {
		if f := strings.Fields(stderr[i+len("\ndemo-curl "):]); len(f) == 2 {
			r.code, _ = strconv.Atoi(f[0])
			r.version = f[1]
		}
		stderr = stderr[:i]
	}
	r.stderr = stderr
	return r
}

// curlVersion is the first line of curl --version.
func curlVersion() string {
	out, err := exec.Command("curl", "--version").Output()
	if err != nil {
		return "(not found: make deps installs it)"
	}
	f := strings.Fields(firstLine(string(out)))
	if len(f) >= 2 {
		return f[1]
	}
	return ""
}
