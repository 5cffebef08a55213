package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

func newServiceCommand() *cobra.Command {
	return agentList[agentclient.Service]{
		Group:      "service",
		GroupShort: "Inspect the Service translation the node agent has programmed",
		Short:      "List each Service port's ClusterIP and the backends the datapath translates it to",
		Long: `List asks the agent on this node (through its API socket) for the Service
ports it has programmed into the datapath: each ClusterIP and port, and the
ready backends (pod address and target port) that a new connection to it
may be given, one per connection. A port with no backend refuses
connections.`,
		What:  "services",
		Fetch: (*agentclient.Client).Services,
		Table: serviceTable,
	}.command()
}

// serviceTable writes one line per backend; the Service's columns are on
// its first line only.
func serviceTable(tw *tabwriter.Writer, svcs []agentclient.Service) {
	fmt.Fprintln(tw, "NAMESPACE/SERVICE\tPORT\tFRONTEND\tBACKEND\tPOD")
	for _, s := range svcs {
		first := fmt.Sprintf("%s/%s\t%s\t%s/%s", s.Namespace, s.Name, s.PortName, s.Frontend, s.Protocol)
		if len(s.Backends) == 0 {
			fmt.Fprintf(tw, "%s\t(none: connections refused)\t\n", first)
			continue
		}
		for i, be := range s.Backends {
			if i > 0 {
				first = "\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\n", first, be.Address, s.Protocol, be.Pod)
		}
	}
}
