package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/internal/localcluster"
)

const iperfPort = 5201

// throughput runs iperf3 from one pod to another: with no programs
// attached, with the agent enforcing an allow policy on the server's port,
// and with no programs again (the datapath removed), reps runs each.
func throughput(ctx context.Context, e *env, duration time.Duration, reps int) error {
	server, err := e.c.AddPod(ctx, localcluster.PodSpec{Namespace: benchNS, Name: "iperf-server", Labels: labels("app", "iperf-server")})
	if err != nil {
		return err
	}
	client, err := e.c.AddPod(ctx, localcluster.PodSpec{Namespace: benchNS, Name: "iperf-client", Labels: labels("app", "iperf-client")})
	if err != nil {
		return err
	}
	// The server lives as long as its pod: the local cluster kills what
	// runs in a pod's namespace when it removes the pod.
	srv := server.Command("iperf3", "-s", "--forceflush", "-B", server.IP.String(), "-p", strconv.Itoa(iperfPort))
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting iperf3 -s: %w", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	// iperf3 prints a separator line, then "Server listening on 5201";
	// --forceflush, or a pipe would hold it back.
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "listening") {
				said = true
				listening <- true
			}
		}
		close(listening)
	}()
	select {
	case ok := <-listening:
		if !ok {
			return errors.New("iperf3 -s exited")
		}
	case <-time.After(10 * time.Second):
		return errors.New("iperf3 -s not listening after 10s")
	}

	runs := func(what string) ([]float64, error) {
		var gbps []float64
		for i := range reps {
			g, err := iperf(ctx, client, server, duration)
			if err != nil {
				return nil, fmt.Errorf("%s, run %d: %w", what, i, err)
			}
			logf("%s run %d: %.2f Gbit/s", what, i+1, g)
			gbps = append(gbps, g)
		}
		return gbps, nil
	}

	none, err := runs("no programs")
	if err != nil {
		return err
	}

	tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: "iperf"}, Spec: &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: labels("app", "iperf-server")}},
		Ingress: []v1alpha1.IngressRule{{
			IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: labels("app", "iperf-client")}}}},
			ToPorts:           []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: strconv.Itoa(iperfPort), Protocol: v1alpha1.ProtoTCP}}}},
		}},
	}}
	if err := e.k8s.Create(ctx, tp); err != nil {
		return err
	}
	if err := e.startAgent(ctx); err != nil {
		return err
	}
	// Enforcing: programs on both pods, the server's ingress enforced,
	// the client's identity allowed on the port.
	m := e.maps
	if _, err := poll(ctx, 10*time.Millisecond, 10*time.Second, func() error {
		sep, ok, err := m.endpoint(server.IP)
		if err != nil || !ok || sep.Flags&uint32(bpf.FlagEnforceIngress) == 0 {
			return orNotYet(err)
		}
		if _, ok, err := m.endpoint(client.IP); err != nil || !ok {
			return orNotYet(err)
		}
		id, ok, err := m.identity(client.IP)
		if err != nil || !ok {
			return orNotYet(err)
		}
		return allowed(m, sep.EpID, id, iperfPort)
	}); err != nil {
		return fmt.Errorf("policy not enforced: %w", err)
	}
	enforced, err := runs("enforced")
	if err != nil {
		return err
	}

	// Back to no programs: stop the agent (its programs would stay) and
	// remove the datapath.
	if err := e.stopAgent(); err != nil {
		return err
	}
	if err := e.removeDatapath(); err != nil {
		return err
	}
	after, err := runs("no programs again")
	if err != nil {
		return err
	}

	base := median(append(slices.Clone(none), after...))
	fmt.Printf("iperf3 %s pod to pod (TCP, one stream, %d runs each), Gbit/s:\n", duration, reps)
	fmt.Printf("  no programs:        %s  median %.2f\n", fmtRuns(none), median(none))
	fmt.Printf("  enforced (allow):   %s  median %.2f\n", fmtRuns(enforced), median(enforced))
	fmt.Printf("  no programs again:  %s  median %.2f\n", fmtRuns(after), median(after))
	fmt.Printf("  ratio enforced / no programs (median of both baselines): %.3f\n", median(enforced)/base)
	return nil
}

// iperf runs one iperf3 client and returns the received rate in Gbit/s.
func iperf(ctx context.Context, client, server *localcluster.Pod, d time.Duration) (float64, error) {
	secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := client.Exec(ctx, "iperf3", "-c", server.IP.String(), "-p", strconv.Itoa(iperfPort), "-t", secs, "-J")
	if err != nil {
		return 0, fmt.Errorf("iperf3 -c: %v: %s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRuns(v []float64) string {
	parts := make([]string, len(v))
	for i, g := range v {
		parts[i] = fmt.Sprintf("%.2f", g)
	}
	return strings.Join(parts, " ")
}
