// Command kube-apiserver is the upstream Kubernetes API server, built from
// source at the version pinned in hack/tools/go.mod (see hack/build-tool.sh).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
