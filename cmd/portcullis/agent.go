package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentapi"
	"portcullis.dev/portcullis/monitor"
)

// addSocketFlag adds --socket, the agent's API socket.
func addSocketFlag(cmd *cobra.Command, socket *string) {
	cmd.Flags().StringVar(socket, "socket", agentapi.DefaultSocket, "the agent's API socket (portcullis-agent --api-socket)")
}

// agentError is a failure to talk to the agent: an input error whose
// message names the socket and says whether the agent runs.
func agentError(err error) error {
	return inputErrorf("%v", err)
}

func newEndpointCommand() *cobra.Command {
	ep := &cobra.Command{
		Use:   "endpoint",
		Short: "Inspect the node agent's local endpoints",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var socket, output string
	list := &cobra.Command{
		Use:   "list [-o json] [--socket PATH]",
		Short: "List the agent's endpoints with their lifecycle state and enforcement",
		Long: `List asks the agent on this node (through its API socket) for its local
endpoints: the pods on this node with their endpoint id, address, security
identity, lifecycle state (waiting-for-identity, regenerating, ready,
disconnecting, lockdown), the directions it enforces, and why an endpoint
is not ready.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: unknown format %q (want text or json)", output)
			}
			eps, err := agentapi.NewClient(socket).Endpoints(cmd.Context())
			if err != nil {
				return agentError(err)
			}
			if output == "json" {
				b, err := json.MarshalIndent(eps, "", "  ")
				if err != nil {
					return inputErrorf("rendering the endpoints: %v", err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			return writeEndpointTable(cmd.OutOrStdout(), eps)
		},
	}
	addSocketFlag(list, &socket)
	list.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	ep.AddCommand(list)
	return ep
}

// enforcement describes the enforced directions of an endpoint.
func enforcement(e agentapi.Endpoint) string {
	var parts []string
	if e.IngressEnforced {
		parts = append(parts, "ingress")
	}
	if e.EgressEnforced {
		parts = append(parts, "egress")
	}
	s := strings.Join(parts, "+")
	if s == "" {
		s = "none"
	}
	if e.Audit {
		s += " (audit)"
	}
	return s
}

// writeEndpointTable writes the endpoint table.
func writeEndpointTable(w io.Writer, eps []agentapi.Endpoint) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT ID\tNAMESPACE/POD\tIP\tIDENTITY\tSTATE\tENFORCEMENT\tMESSAGE")
	for _, e := range eps {
		fmt.Fprintf(tw, "%d\t%s/%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.Namespace, e.Pod, e.IP, e.Identity, e.State, enforcement(e), e.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// No padding after the last column of a row without a message.
	var out strings.Builder
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		out.WriteString(strings.TrimRight(line, " \n"))
		if strings.HasSuffix(line, "\n") {
			out.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

func newMonitorCommand() *cobra.Command {
	var socket, output string
	var verdicts []string
	cmd := &cobra.Command{
		Use:   "monitor [-o json] [--verdict VERDICT ...] [--socket PATH]",
		Short: "Follow the agent's flow events",
		Long: `Monitor follows the flow events of the agent on this node until interrupted:
the datapath's verdicts (FORWARDED once per new flow, DROPPED per dropped
packet, REDIRECTED and AUDITED per new flow) and, with the proxy, one L7
record per request. Each event names both sides (pod and identity
labels), the direction of the policy that decided, the protocol and port,
the verdict, the reason and the policy rule.

Text output is one line per event; -o json writes one JSON object per
line. A follower that falls behind loses events and is told how many.`,
		Example: `  portcullis monitor
  portcullis monitor --verdict DROPPED -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: unknown format %q (want text or json)", output)
			}
			want := map[string]bool{}
			for _, v := range verdicts {
				v = strings.ToUpper(strings.TrimSpace(v))
				switch v {
				case monitor.VerdictForwarded, monitor.VerdictDropped, monitor.VerdictRedirected,
					monitor.VerdictAudited, monitor.VerdictDenied, monitor.VerdictError:
				default:
					return fmt.Errorf("--verdict: unknown verdict %q (want FORWARDED, DROPPED, REDIRECTED, AUDITED, DENIED or ERROR)", v)
				}
				want[v] = true
			}
			out := cmd.OutOrStdout()
			err := agentapi.NewClient(socket).Monitor(cmd.Context(), func(l agentapi.MonitorLine) error {
				if l.Type != agentapi.TypeLost && len(want) > 0 && !want[l.Verdict] {
					return nil
				}
				var line string
				if output == "json" {
					b, err := json.Marshal(l)
					if err != nil {
						return err
					}
					line = string(b)
				} else {
					line = formatMonitorLine(l)
				}
				_, err := fmt.Fprintln(out, line)
				return err
			})
			if err != nil {
				return agentError(err)
			}
			return nil
		},
	}
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one event per line)")
	cmd.Flags().StringSliceVar(&verdicts, "verdict", nil, "show only these verdicts (FORWARDED, DROPPED, REDIRECTED, AUDITED, DENIED, ERROR); repeatable or comma-separated")
	return cmd
}

// formatMonitorLine is one line of `portcullis monitor`'s text output.
func formatMonitorLine(l agentapi.MonitorLine) string {
	if l.Type == agentapi.TypeLost {
		return fmt.Sprintf("%s LOST %d events: this monitor fell behind", l.Time.Format("15:04:05.000"), l.Lost)
	}
	return formatEvent(l.Event)
}

// formatEvent renders a flow event on one line: time, verdict, source →
// destination:port with their labels, direction, protocol, reason,
// policy, and the L7 request if any.
func formatEvent(e monitor.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-10s %s -> %s %s %s", e.Time.Format("15:04:05.000"), e.Verdict,
		side(e.Source, false), side(e.Destination, true), orDash(e.Direction), e.Protocol)
	if e.L7 != nil {
		fmt.Fprintf(&b, " %s", e.L7.Protocol)
		if e.L7.Method != "" || e.L7.Path != "" {
			fmt.Fprintf(&b, " %s %s", e.L7.Method, e.L7.Path)
		}
		if e.L7.Status != 0 {
			fmt.Fprintf(&b, " status=%d", e.L7.Status)
		}
		if e.L7.GRPCStatus != nil {
			fmt.Fprintf(&b, " grpc-status=%d", *e.L7.GRPCStatus)
		}
		if e.L7.Kafka != nil {
			fmt.Fprintf(&b, " %s", e.L7.Kafka)
		}
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", e.Reason)
	}
	if e.Policy != "" {
		fmt.Fprintf(&b, " policy=%q", e.Policy)
	}
	return b.String()
}

// side renders one side of a flow: namespace/pod (or the address), the
// destination's port, and the identity's labels without the namespace
// and service-account ones (the name already says the namespace).
func side(ep monitor.Endpoint, port bool) string {
	name := ep.IP
	if ep.Pod != "" {
		name = ep.Namespace + "/" + ep.Pod
	}
	if port && ep.Port != 0 {
		name = fmt.Sprintf("%s:%d", name, ep.Port)
	}
	var ls []string
	for _, l := range ep.Labels {
		if strings.HasPrefix(l, "io.kubernetes.pod.namespace=") || strings.HasPrefix(l, "io.cilium.k8s.") {
			continue
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return name
	}
	return name + " (" + strings.Join(ls, ",") + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
