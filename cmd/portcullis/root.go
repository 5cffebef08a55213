package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses of Execute.
const (
	exitOK    = 0
	exitInput = 1
	exitUsage = 2
)

// inputError is a failure of a command that ran with good flags: bad
// files, or output that could not be written. Its lines are printed on
// standard error as they are, and Execute returns exitInput. Every other
// error from cobra (unknown flag, missing required flag, flags that
// exclude each other, a bad flag value) is a usage error.
type inputError struct {
	// problems are printed one per line.
	problems []string
}

func (e *inputError) Error() string { return strings.Join(e.problems, "\n") }

// inputErrorf is an inputError with one problem.
func inputErrorf(format string, args ...any) error {
	return &inputError{problems: []string{fmt.Sprintf(format, args...)}}
}

// Execute runs the CLI with args (without the program name), writing to
// stdout and stderr, and returns the exit status: 0 on success (for trace,
// whatever the verdict), 1 on bad input, 2 on a bad command line. Nothing
// is written to stdout when the status is not 0.
func Execute(args []string, stdout, stderr io.Writer) int {
	return ExecuteContext(context.Background(), args, stdout, stderr)
}

// ExecuteContext is Execute with a context: cancelling it stops a command
// that follows the agent (monitor) with status 0.
func ExecuteContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	if ie, ok := errors.AsType[*inputError](err); ok {
		for _, p := range ie.problems {
			fmt.Fprintln(stderr, p)
		}
		return exitInput
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	fmt.Fprint(stderr, cmd.UsageString())
	return exitUsage
}

// newRootCommand builds a fresh command tree, so that Execute can be
// called many times in one process (tests do).
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "portcullis",
		Short:         "Portcullis: Kubernetes L7 network policy, with Cilium's semantics",
		SilenceUsage:  true,
		SilenceErrors: true,
		// No Args and no Run: `portcullis` alone prints the help, and
		// cobra rejects an unknown subcommand.
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pol := &cobra.Command{
		Use:   "policy",
		Short: "Trace, validate and convert policy files (trace --live: against the agent)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	pol.AddCommand(newTraceCommand(), newValidateCommand(), newConvertCommand())
	root.AddCommand(pol, newEndpointCommand(), newServiceCommand(), newFQDNCommand(), newMonitorCommand(), newProxyCommand())
	return root
}

// addFileFlag adds the repeatable, required -f flag.
func addFileFlag(cmd *cobra.Command, files *[]string) {
	cmd.Flags().StringArrayVarP(files, "filename", "f", nil,
		"policy file or directory (*.yaml, *.yml, *.json, read recursively); - reads standard input; repeatable")
	_ = cmd.MarkFlagRequired("filename")
}
