// Command coredns is CoreDNS, built from source at the version pinned in
// hack/tools/coredns/go.mod (see hack/build-tool.sh), with only the plugins
// the local cluster's kube-dns uses, as CoreDNS's plugin.cfg mechanism
// intends: a smaller binary and a build of minutes. It has no forward
// plugin on purpose: the local cluster's DNS never sends a query off the
// machine. Its own module, because CoreDNS pins client-go and friends
// independently of the project.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives is the plugin chain's order, the relative order of upstream's
// plugin.cfg for the plugins linked in.
var directives = []string{"errors", "log", "health", "ready", "cache", "kubernetes", "file"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
