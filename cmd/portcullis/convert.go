package main

import (
	"bytes"
	"io"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/loader"
)

func newConvertCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "convert -f FILE_OR_DIR [-f ...]",
		Short: "Rewrite CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy as Portcullis kinds",
		Long: `Convert loads and checks the files like validate, then writes them to
standard output as one YAML stream: CiliumNetworkPolicy and
CiliumClusterwideNetworkPolicy documents become TrafficPolicy and
ClusterTrafficPolicy with the same rules; every other document is written
as it was.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConvert(cmd.OutOrStdout(), cmd.ErrOrStderr(), files)
		},
	}
	addFileFlag(cmd, &files)
	return cmd
}

func runConvert(stdout, stderr io.Writer, files []string) error {
	res, err := loadRepository(policy.NewRepository(policy.Options{}), files)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := loader.Convert(&buf, res); err != nil {
		return inputErrorf("converting: %v", err)
	}
	printWarnings(stderr, res)
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return inputErrorf("writing converted policies: %v", err)
	}
	return nil
}
