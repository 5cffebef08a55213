package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

func newFQDNCommand() *cobra.Command {
	fqdn := &cobra.Command{
		Use:   "fqdn",
		Short: "Inspect what the node agent's DNS proxy learned for toFQDNs",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cache := &cobra.Command{
		Use:   "cache",
		Short: "The names and addresses learned from DNS answers",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var socket, output string
	list := &cobra.Command{
		Use:   "list [-o json] [--socket PATH]",
		Short: "List each learned name's addresses, the endpoint whose lookup taught them and the time left",
		Long: `List asks the agent on this node (through its API socket) for what its DNS
proxy's answers taught it: for each name that a toFQDNs selector matches,
the addresses, the endpoint (namespace/pod) whose lookup returned them, and
the seconds until each stops being selected (the answer's TTL, at least
--tofqdns-min-ttl). As cilium-dbg fqdn cache list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: unknown format %q (want text or json)", output)
			}
			es, err := agentclient.NewClient(socket).FQDNCache(cmd.Context())
			if err != nil {
				return agentError(err)
			}
			if output == "json" {
				b, err := json.MarshalIndent(es, "", "  ")
				if err != nil {
					return inputErrorf("rendering the FQDN cache: %v", err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			return writeFQDNTable(cmd.OutOrStdout(), es)
		},
	}
	addSocketFlag(list, &socket)
	list.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cache.AddCommand(list)
	fqdn.AddCommand(cache)
	return fqdn
}

// writeFQDNTable writes one line per name, endpoint and address.
func writeFQDNTable(w io.Writer, es []agentclient.FQDNCacheEntry) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tIP\tTTL")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", e.Name, e.Endpoint, e.IP, e.TTL)
	}
	return tw.Flush()
}
