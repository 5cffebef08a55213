package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

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
			eps, err := agentclient.NewClient(socket).Endpoints(cmd.Context())
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
func enforcement(e agentclient.Endpoint) string {
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
func writeEndpointTable(w io.Writer, eps []agentclient.Endpoint) error {
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
