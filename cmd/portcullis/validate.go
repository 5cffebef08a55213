package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/loader"
)

func newValidateCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "validate -f FILE_OR_DIR [-f ...]",
		Short: "Check policy files as the API server and the engine would",
		Long: `Validate loads every file strictly, checks each policy against the CRD
schema and CEL rules, and compiles it with the policy engine. It prints
every problem found, in every file, one per line, and exits with status 1
if there is any; otherwise it prints a summary and exits with status 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runValidate(cmd.OutOrStdout(), cmd.ErrOrStderr(), files)
		},
	}
	addFileFlag(cmd, &files)
	return cmd
}

func runValidate(stdout, stderr io.Writer, files []string) error {
	l := newLoader()
	res, err := l.Load(files...)
	if err != nil {
		return &inputError{problems: validateEach(l, files, err)}
	}
	if problems := compile(policy.NewRepository(policy.Options{}), res); len(problems) > 0 {
		return &inputError{problems: problems}
	}
	printWarnings(stderr, res)
	printLint(stderr, res)
	if _, err := fmt.Fprintln(stdout, summary(res)); err != nil {
		return inputErrorf("writing the summary: %v", err)
	}
	return nil
}

// validateEach completes a failed load's problems with the engine's. The
// loader returns no documents when any file is bad, and none for a
// document that fails the schema check, so each file is loaded again
// without the schema check and compiled alone; engine problems at or
// inside a field the load already reported are left out.
func validateEach(l *loader.Loader, files []string, loadErr error) []string {
	problems := loadProblems(loadErr)
	type reported struct{ src, field string }
	var seen []reported
	if errs, ok := errors.AsType[loader.Errors](loadErr); ok {
		for _, e := range errs {
			f := e.Field
			if fe, ok := errors.AsType[*field.Error](e.Err); ok && f == "" {
				f = fe.Field
			}
			seen = append(seen, reported{e.Source.String(), f})
		}
	}
	covered := func(src, f string) bool {
		for _, r := range seen {
			if r.src == src && (r.field == f || strings.HasPrefix(f, r.field+".") || strings.HasPrefix(f, r.field+"[")) {
				return true
			}
		}
		return false
	}
	unchecked := *l
	unchecked.Validate = nil
	repo := policy.NewRepository(policy.Options{})
	for _, f := range expandPaths(files) {
		if f == "-" {
			continue // standard input can be read only once
		}
		res, err := unchecked.Load(f)
		if err != nil {
			continue // not decodable: the load's problems say why
		}
		for _, d := range res.Documents {
			for _, fe := range repo.ApplyObject(d.Object) {
				if !covered(d.Source.String(), fe.Field) {
					problems = append(problems, fmt.Sprintf("%s: %s", d.Source, fe.Error()))
				}
			}
		}
	}
	return problems
}

// summary is `N documents valid (a KindA, b KindB)`, kinds as written,
// with the number of skipped documents if any.
func summary(res *loader.Result) string {
	counts := map[string]int{}
	for _, d := range res.Documents {
		counts[d.Source.Kind]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s valid", len(res.Documents), plural(len(res.Documents), "document", "documents"))
	if len(kinds) > 0 {
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%d %s", counts[k], k)
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	if n := len(res.Skipped); n > 0 {
		fmt.Fprintf(&b, ", %d skipped", n)
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// printWarnings prints the loader's warnings on stderr.
func printWarnings(stderr io.Writer, res *loader.Result) {
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
}

// printLint prints the engine's warnings about valid policies that are
// almost always mistakes, such as an empty peer list, on stderr.
func printLint(stderr io.Writer, res *loader.Result) {
	for _, d := range res.Documents {
		for _, w := range policy.Lint(d.Object) {
			fmt.Fprintf(stderr, "warning: %s: %s\n", d.Source, w)
		}
	}
}
