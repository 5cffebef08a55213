// Package crd embeds the generated CustomResourceDefinitions of the
// policy.portcullis.dev API (config/crd/bases, written by `make manifests`)
// and parses them, so that tools can serve, install or validate against
// exactly the schemas the cluster gets.
package crd
