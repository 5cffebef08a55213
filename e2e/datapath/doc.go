// Package datapath holds the node agent's end-to-end tests (root only):
// see datapath_test.go.
package datapath
