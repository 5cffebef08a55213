package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"portcullis.dev/portcullis/apis/policy/validation"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/loader"
)

// newLoader returns the loader every command uses: strict decoding plus
// the CRD schema and CEL rules, as the API server would admit the objects.
func newLoader() *loader.Loader {
	return &loader.Loader{Validate: validation.Validate}
}

// loadProblems renders a load error as one problem per line.
func loadProblems(err error) []string {
	if errs, ok := errors.AsType[loader.Errors](err); ok {
		out := make([]string, len(errs))
		for i, e := range errs {
			out[i] = e.Error()
		}
		return out
	}
	return []string{fmt.Sprintf("loading policies: %v", err)}
}

// compile adds every document of res to repo: Namespaces with their labels
// and audit annotation, policies compiled by the engine. It returns every
// compile problem, each as `SOURCE: field.path: message`; a policy with
// problems is left out of repo.
func compile(repo *policy.Repository, res *loader.Result) []string {
	var problems []string
	for _, d := range res.Documents {
		for _, fe := range repo.ApplyObject(d.Object) {
			problems = append(problems, fmt.Sprintf("%s: %s", d.Source, fe.Error()))
		}
	}
	return problems
}

// loadRepository loads paths and compiles them into repo. On any problem
// it returns an *inputError listing every problem, loader's and engine's.
func loadRepository(repo *policy.Repository, paths []string) (*loader.Result, error) {
	res, err := newLoader().Load(paths...)
	if err != nil {
		return nil, &inputError{problems: loadProblems(err)}
	}
	if problems := compile(repo, res); len(problems) > 0 {
		return nil, &inputError{problems: problems}
	}
	return res, nil
}

// expandPaths lists the files a load of paths reads, with the loader's
// rules: a named file whatever its name, directories recursively in
// lexical order taking *.yaml, *.yml and *.json and skipping directories
// whose names start with a dot. "-" and paths that cannot be walked are
// returned as they are (the loader reports the problem).
func expandPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p == "-" {
			out = append(out, p)
			continue
		}
		var files []string
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if path == p {
				files = append(files, path)
				return nil
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			out = append(out, p)
			continue
		}
		out = append(out, files...)
	}
	return out
}
