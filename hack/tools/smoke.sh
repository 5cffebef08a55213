#!/usr/bin/env bash
# smoke.sh [ASSETS_DIR]
#
# Proves that the source-built etcd, kube-apiserver and kubectl in ASSETS_DIR
# (default bin/k8s/<version>, what envtest takes as KUBEBUILDER_ASSETS) work
# together: etcd on a temp dir with loopback ports, kube-apiserver against it
# (RBAC, a static token for a system:masters user, a fresh service-account
# key; no endpoint reconciler, as envtest, since 127.0.0.1 may not be
# advertised), wait for /readyz, then kubectl get ns and kubectl api-resources.
# Everything it starts is stopped and the temp dir removed on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
assets=${1:-$(ls -d "$root"/bin/k8s/*/ 2>/dev/null | sort -V | tail -1)}
assets=${assets%/}
for b in etcd kube-apiserver kubectl; do
	[[ -x $assets/$b ]] || { echo "smoke.sh: $assets/$b missing (make tools)" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
	local rc=$?
	# kube-apiserver first (its graceful shutdown hangs once etcd is gone),
	# then etcd; SIGKILL whatever has not exited after 10s.
	local i p
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		kill "$p" 2>/dev/null || continue
		for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ $rc -ne 0 ]]; then
		echo "--- etcd log (tail)"; tail -20 "$tmp/etcd.log" 2>/dev/null || true
		echo "--- kube-apiserver log (tail)"; tail -40 "$tmp/apiserver.log" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT INT TERM

# freeport: a loopback port nobody listens on right now.
freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}
client=$(freeport) peer=$(freeport) secure=$(freeport)

"$assets/etcd" --name smoke --data-dir "$tmp/etcd" \
	--listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
	--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
	--initial-cluster "smoke=http://127.0.0.1:$peer" --unsafe-no-fsync >"$tmp/etcd.log" 2>&1 &
pids+=($!)

openssl genrsa -out "$tmp/sa.key" 2048 2>/dev/null
openssl rsa -in "$tmp/sa.key" -pubout -out "$tmp/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token,smoke-admin,smoke-admin,system:masters" >"$tmp/tokens.csv"

"$assets/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$client" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$secure" \
	--cert-dir "$tmp/certs" \
	--authorization-mode RBAC --token-auth-file "$tmp/tokens.csv" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$tmp/sa.pub" --service-account-signing-key-file "$tmp/sa.key" \
	--service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none >"$tmp/apiserver.log" 2>&1 &
pids+=($!)

export KUBECONFIG=$tmp/kubeconfig
"$assets/kubectl" config set-cluster smoke --server "https://127.0.0.1:$secure" --insecure-skip-tls-verify=true >/dev/null
"$assets/kubectl" config set-credentials smoke --token "$token" >/dev/null
"$assets/kubectl" config set-context smoke --cluster smoke --user smoke >/dev/null
"$assets/kubectl" config use-context smoke >/dev/null

start=$SECONDS
until "$assets/kubectl" get --raw /readyz >/dev/null 2>&1; do
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "smoke.sh: a server exited" >&2; exit 1; }; done
	if ((SECONDS - start > 90)); then
		echo "smoke.sh: kube-apiserver not ready after 90s" >&2
		"$assets/kubectl" get --raw '/readyz?verbose' >&2 || true
		exit 1
	fi
	sleep 1
done
echo "kube-apiserver ready after $((SECONDS - start))s (etcd :$client, apiserver :$secure)"
"$assets/kubectl" version
"$assets/kubectl" get ns
n=$("$assets/kubectl" api-resources --no-headers | wc -l)
echo "kubectl api-resources: $n resources"
((n > 40))
"$assets/kubectl" auth can-i '*' '*' >/dev/null
echo "smoke.sh: ok"
