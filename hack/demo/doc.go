// Command demo is `make demo`: it brings up the local cluster
// (hack/localcluster), starts the operator (bin/portcullis-operator) if it
// has been built, makes the pods of the examples as network namespaces,
// applies examples/ with kubectl, shows the policies with the status the
// operator gave them, prints the verdict table of hack/demo.sh (portcullis
// policy trace over the demo's requests) and tears everything down, also on
// error and on Ctrl-C.
//
// It needs root, and runs from the repository root after `make build tools`:
//
//	go run ./hack/demo [-v] [-operator bin/portcullis-operator] [-kubectl bin/kubectl]
//
// Exit status: 0 on success, 1 on failure (including a verdict that differs
// from the expected one), 130 when interrupted.
package main
