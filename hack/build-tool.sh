#!/usr/bin/env bash
# build-tool.sh TOOL VERSION OUTPUT
#
# Builds one tool binary from source through the Go module proxy, from the
# pinned modules under hack/tools (their go.mod/go.sum are committed, so the
# build is reproducible), and stamps its version. The binary is written to a
# temporary name next to OUTPUT and moved into place only when the build
# succeeded, so an interrupted build never leaves a half binary behind.
#
#   TOOL     kube-apiserver | kubectl | etcd | helm | kustomize | coredns
#   VERSION  the version the Makefile pins (1.37.2 for the Kubernetes binaries,
#            v3.6.16 for etcd, vX.Y.Z for helm, kustomize and coredns). It must be the
#            version the tool's go.mod selects; to move a pin, change both.
#
# Environment: GO (default go), TOOLS_GIT_COMMIT overrides the commit stamped
# into the binaries (the module proxy does not tell us the upstream commit).
set -euo pipefail

if [[ $# -ne 3 ]]; then
	echo "usage: $0 TOOL VERSION OUTPUT" >&2
	exit 2
fi
tool=$1 version=$2 out=$3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}

# Only the module proxy (and its checksum database); never a newer toolchain,
# never a go.work from somewhere above, never an edit to the committed go.mod.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
# Static binaries, as upstream releases them; no C toolchain needed.
export CGO_ENABLED=0

# modinfo DIR MODULE TEMPLATE: go list -m on the effective (replaced) module.
modinfo() {
	(cd "$1" && "$GO" list -m -f "{{with .Replace}}{{$3}}{{else}}{{$3}}{{end}}" "$2")
}

# require DIR MODULE WANT: fail unless DIR's go.mod selects MODULE@WANT.
require() {
	local have
	have=$(modinfo "$1" "$2" .Version)
	if [[ $have != "$3" ]]; then
		echo "build-tool.sh: $tool: ${1#"$root"/}/go.mod selects $2 $have, the Makefile pins $3." >&2
		echo "  move the pin in both places: (cd ${1#"$root"/} && go get $2@$3 && go mod tidy)" >&2
		exit 1
	fi
}

# pubdate DIR MODULE: the module version's publication time on the proxy; used
# as the build date so that two builds of one version are byte-identical.
pubdate() {
	(cd "$1" && "$GO" list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "$2")
}

commit=${TOOLS_GIT_COMMIT:-unknown}
ldflags="-s -w"
case $tool in
kube-apiserver | kubectl)
	dir=$root/hack/tools
	v=v${version#v}
	require "$dir" k8s.io/kubernetes "$v"
	require "$dir" k8s.io/kubectl "v0.${v#v1.}"
	IFS=. read -r major minor _ <<<"${v#v}"
	date=$(pubdate "$dir" k8s.io/kubernetes)
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
		ldflags+=" -X $p.gitCommit=$commit -X $p.gitTreeState=clean -X $p.buildDate=$date"
	done
	pkg=./$tool
	;;
etcd)
	dir=$root/hack/tools/etcd
	require "$dir" go.etcd.io/etcd/server/v3 "$version"
	# version.Version is a constant in the source; only the commit is a variable.
	ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=$commit"
	pkg=.
	;;
helm)
	dir=$root/hack/tools/helm
	require "$dir" helm.sh/helm/v4 "$version"
	ldflags+=" -X helm.sh/helm/v4/internal/version.version=$version"
	ldflags+=" -X helm.sh/helm/v4/internal/version.gitCommit=$commit"
	ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
	pkg=helm.sh/helm/v4/cmd/helm
	;;
kustomize)
	dir=$root/hack/tools/kustomize
	require "$dir" sigs.k8s.io/kustomize/kustomize/v5 "$version"
	date=$(pubdate "$dir" sigs.k8s.io/kustomize/kustomize/v5)
	ldflags+=" -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$version"
	ldflags+=" -X sigs.k8s.io/kustomize/api/provenance.gitCommit=$commit"
	ldflags+=" -X sigs.k8s.io/kustomize/api/provenance.buildDate=$date"
	pkg=sigs.k8s.io/kustomize/kustomize/v5
	;;
coredns)
	dir=$root/hack/tools/coredns
	require "$dir" github.com/coredns/coredns "$version"
	ldflags+=" -X github.com/coredns/coredns/coremain.GitCommit=$commit"
	pkg=.
	;;
*)
	echo "build-tool.sh: unknown tool $tool" >&2
	exit 2
	;;
esac

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
start=$SECONDS
echo "building $tool $version -> ${out#"$root"/}"
(cd "$dir" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg")
mv -f "$tmp" "$out"
trap - EXIT
echo "built $tool $version in $((SECONDS - start))s"
