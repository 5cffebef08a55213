package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

func newEndpointCommand() *cobra.Command {
	return agentList[agentclient.Endpoint]{
		Group:      "endpoint",
		GroupShort: "Inspect the node agent's local endpoints",
		Short:      "List the agent's endpoints with their lifecycle state and enforcement",
		Long: `List asks the agent on this node (through its API socket) for its local
endpoints: the pods on this node with their endpoint id, address, security
identity, lifecycle state (waiting-for-identity, regenerating, ready,
disconnecting, lockdown), the directions it enforces, and why an endpoint
is not ready.`,
		What:  "endpoints",
		Fetch: (*agentclient.Client).Endpoints,
		Table: endpointTable,
	}.command()
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

// endpointTable writes the endpoint table.
func endpointTable(tw *tabwriter.Writer, eps []agentclient.Endpoint) {
	fmt.Fprintln(tw, "ENDPOINT ID\tNAMESPACE/POD\tIP\tIDENTITY\tSTATE\tENFORCEMENT\tMESSAGE")
	for _, e := range eps {
		fmt.Fprintf(tw, "%d\t%s/%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.Namespace, e.Pod, e.IP, e.Identity, e.State, enforcement(e), e.Message)
	}
}
