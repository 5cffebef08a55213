package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

// newFQDNCommand is `fqdn cache list`, as cilium-dbg's.
func newFQDNCommand() *cobra.Command {
	fqdn := &cobra.Command{
		Use:   "fqdn",
		Short: "Inspect what the node agent's DNS proxy learned for toFQDNs",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	fqdn.AddCommand(agentList[agentclient.FQDNCacheEntry]{
		Group:      "cache",
		GroupShort: "The names and addresses learned from DNS answers",
		Short:      "List each learned name's addresses, the endpoint whose lookup taught them and the time left",
		Long: `List asks the agent on this node (through its API socket) for what its DNS
proxy's answers taught it: for each name that a toFQDNs selector matches,
the addresses, the endpoint (namespace/pod) whose lookup returned them, and
the seconds until each stops being selected (the answer's TTL, at least
--tofqdns-min-ttl). As cilium-dbg fqdn cache list.`,
		What: "FQDN cache",
		Fetch: func(c *agentclient.Client, ctx context.Context) ([]agentclient.FQDNCacheEntry, error) {
			return c.FQDNCache(ctx)
		},
		Table: fqdnTable,
	}.command())
	return fqdn
}

// fqdnTable writes one row per name, endpoint and address.
func fqdnTable(tw *tabwriter.Writer, es []agentclient.FQDNCacheEntry) {
	fmt.Fprintln(tw, "NAME\tENDPOINT\tIP\tTTL")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", e.Name, e.Endpoint, e.IP, e.TTL)
	}
}
