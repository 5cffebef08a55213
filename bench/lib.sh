# Shared by the bench/*.sh scripts: builds bench/agentbench and runs one of
# its modes as root, under the e2e node lock (the same lock file as
# e2e/internal/nodelock: the benchmark adds the proxy's ip rule and mounts
# a bpffs, like the root e2e packages), printing the load average before and
# after so that a figure taken on a busy machine says so.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $(id -u) != 0 ]]; then
	echo "$0: needs root (BPF, network namespaces)" >&2
	exit 2
fi
if [[ -z ${KUBEBUILDER_ASSETS:-} ]]; then
	KUBEBUILDER_ASSETS=$(ls -d "$root"/bin/k8s/*/ 2>/dev/null | sort -V | tail -1)
	export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS%/}
fi
[[ -x $KUBEBUILDER_ASSETS/kube-apiserver ]] || { echo "$0: no kube-apiserver in KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS; run make tools" >&2; exit 2; }

run_agentbench() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$root" && go build -o "$tmp/agentbench" ./bench/agentbench)
	echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# agentbench $*"
	flock /run/portcullis-e2e.lock "$tmp/agentbench" "$@"
	echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
}
