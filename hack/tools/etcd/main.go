// Command etcd is the upstream etcd server, built from source at the version
// pinned in hack/tools/etcd/go.mod (see hack/build-tool.sh). It lives in its
// own module because etcd server v3.6 pins grpc/otel/etcd-client versions that
// differ from the ones k8s.io/kubernetes selects.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
