package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
)

// agentList describes a `<group> list` command that shows what the node
// agent reports through its API socket, as a table or as JSON.
type agentList[T any] struct {
	// Group is the command group ("endpoint"); GroupShort its help line.
	Group, GroupShort string
	// Short and Long are the list command's help.
	Short, Long string
	// What names the items in errors ("endpoints").
	What string
	// Fetch asks the agent.
	Fetch func(*agentclient.Client, context.Context) ([]T, error)
	// Table writes the items to a tabwriter, header first.
	Table func(*tabwriter.Writer, []T)
}

// command builds `<group>` with its `list [-o json] [--socket PATH]`.
func (l agentList[T]) command() *cobra.Command {
	group := &cobra.Command{
		Use:   l.Group,
		Short: l.GroupShort,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var socket, output string
	list := &cobra.Command{
		Use:   "list [-o json] [--socket PATH]",
		Short: l.Short,
		Long:  l.Long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: unknown format %q (want text or json)", output)
			}
			items, err := l.Fetch(agentclient.NewClient(socket), cmd.Context())
			if err != nil {
				return agentError(err)
			}
			if output == "json" {
				b, err := json.MarshalIndent(items, "", "  ")
				if err != nil {
					return inputErrorf("rendering the %s: %v", l.What, err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			return writeTable(cmd.OutOrStdout(), func(tw *tabwriter.Writer) { l.Table(tw, items) })
		},
	}
	addSocketFlag(list, &socket)
	list.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	group.AddCommand(list)
	return group
}

// writeTable renders fill's rows aligned, with no padding after the last
// column of a row whose last cells are empty.
func writeTable(w io.Writer, fill func(*tabwriter.Writer)) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fill(tw)
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
