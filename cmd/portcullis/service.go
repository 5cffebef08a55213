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

func newServiceCommand() *cobra.Command {
	svc := &cobra.Command{
		Use:   "service",
		Short: "Inspect the Service translation the node agent has programmed",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var socket, output string
	list := &cobra.Command{
		Use:   "list [-o json] [--socket PATH]",
		Short: "List each Service port's ClusterIP and the backends the datapath translates it to",
		Long: `List asks the agent on this node (through its API socket) for the Service
ports it has programmed into the datapath: each ClusterIP and port, and the
ready backends (pod address and target port) that a new connection to it
may be given, one per connection. A port with no backend refuses
connections.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: unknown format %q (want text or json)", output)
			}
			svcs, err := agentclient.NewClient(socket).Services(cmd.Context())
			if err != nil {
				return agentError(err)
			}
			if output == "json" {
				b, err := json.MarshalIndent(svcs, "", "  ")
				if err != nil {
					return inputErrorf("rendering the services: %v", err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			return writeServiceTable(cmd.OutOrStdout(), svcs)
		},
	}
	addSocketFlag(list, &socket)
	list.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	svc.AddCommand(list)
	return svc
}

// writeServiceTable writes one line per backend; the Service's columns are
// on its first line only.
func writeServiceTable(w io.Writer, svcs []agentclient.Service) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
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
	if err := tw.Flush(); err != nil {
		return err
	}
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
