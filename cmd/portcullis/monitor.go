package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/monitor"
)

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
			err := agentclient.NewClient(socket).Monitor(cmd.Context(), func(l agentclient.MonitorLine) error {
				if l.Type != agentclient.TypeLost && len(want) > 0 && !want[l.Verdict] {
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
func formatMonitorLine(l agentclient.MonitorLine) string {
	if l.Type == agentclient.TypeLost {
		return fmt.Sprintf("%s LOST %d events: this monitor fell behind", l.Time.Format("15:04:05.000"), l.Lost)
	}
	return formatEvent(l.Event)
}

// formatEvent renders a flow event on one line: time, verdict, source →
// destination:port with their labels, direction, protocol, the L7
// request if any, reason, policy, and the Service called (the destination
// is then its backend).
func formatEvent(e agentclient.Event) string {
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
		if k := e.L7.Kafka; k != nil {
			mk := monitor.Kafka{APIKey: k.APIKey, APIVersion: k.APIVersion, ClientID: k.ClientID, Topics: k.Topics, ErrorCode: k.ErrorCode}
			fmt.Fprintf(&b, " %s", mk.String())
		}
		if d := e.L7.DNS; d != nil {
			fmt.Fprintf(&b, " %s %s", d.Query, d.Type)
			if d.RCode != "" {
				fmt.Fprintf(&b, " rcode=%s", d.RCode)
			}
			if len(d.Answers) > 0 {
				fmt.Fprintf(&b, " answers=%s", strings.Join(d.Answers, ","))
			}
		}
		if e.L7.Latency > 0 {
			fmt.Fprintf(&b, " latency=%s", e.L7.Latency.Round(time.Microsecond))
		}
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", e.Reason)
	}
	if e.Policy != "" {
		fmt.Fprintf(&b, " policy=%q", e.Policy)
	}
	if e.Service != "" {
		fmt.Fprintf(&b, " service=%q", e.Service)
	}
	return b.String()
}

// side renders one side of a flow: namespace/pod (or the address), the
// destination's port, and the identity's labels without the namespace
// and service-account ones (the name already says the namespace).
func side(ep agentclient.FlowEndpoint, port bool) string {
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
