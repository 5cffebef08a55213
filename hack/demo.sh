#!/usr/bin/env bash
# Trace the demo requests over examples/ with the portcullis CLI and print a
# verdict table, then one full explanation.
#
# Run from anywhere by `make demo` (which builds bin/portcullis first). Set
# PORTCULLIS to use another binary. Exits non-zero if any verdict differs
# from the expected one, or if any trace fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${PORTCULLIS:-bin/portcullis}
if [[ ! -x $bin ]]; then
	echo "demo: $bin not found; run make build first" >&2
	exit 1
fi

tiefighter=org=empire,class=tiefighter
xwing=org=alliance,class=xwing
deathstar=org=empire,class=deathstar
mediabot=org=alliance,class=mediabot
kubedns=io.kubernetes.pod.namespace=kube-system,k8s-app=kube-dns

failures=0
row_format='%-10s %-56s %-9s %-9s %s\n'

# check SCENARIO REQUEST EXPECTED -- TRACE_ARGS...
# Runs one trace and prints one row of the table.
check() {
	local scenario=$1 request=$2 expected=$3
	shift 4
	local out got mark=""
	if out=$("$bin" policy trace "$@" 2>&1); then
		got=${out##*Final verdict: }
	else
		got="ERROR"
		printf '%s\n' "$out" >&2
	fi
	if [[ $got != "$expected" ]]; then
		mark="<-- MISMATCH"
		failures=$((failures + 1))
	fi
	row "$scenario" "$request" "$expected" "$got" "$mark"
}

# row COLUMNS... prints one table row without trailing blanks.
row() {
	local line
	# shellcheck disable=SC2059
	line=$(printf "$row_format" "$@")
	printf '%s\n' "${line%"${line##*[![:space:]]}"}"
}

row SCENARIO REQUEST EXPECTED GOT ""
row -------- ------- -------- --- ""

sw=(-f examples/starwars --dst "$deathstar" --dport 80)
check starwars "tiefighter POST /v1/request-landing" ALLOWED -- "${sw[@]}" --src "$tiefighter" --http "POST /v1/request-landing"
check starwars "tiefighter PUT /v1/exhaust-port" DENIED -- "${sw[@]}" --src "$tiefighter" --http "PUT /v1/exhaust-port"
check starwars "xwing POST /v1/request-landing" DENIED -- "${sw[@]}" --src "$xwing" --http "POST /v1/request-landing"

hdr=(-f examples/starwars -f examples/headers --src "$tiefighter" --dst "$deathstar" --dport 80 --http "GET /v1/")
check headers "tiefighter GET /v1/ X-Token: 12345" ALLOWED -- "${hdr[@]}" --http-header "X-Token: 12345"
check headers "tiefighter GET /v1/ X-Token: 12a" DENIED -- "${hdr[@]}" --http-header "X-Token: 12a"

cil=(-f examples/cilium/sw_l3_l4_l7_policy.yaml --dst "$deathstar" --dport 80)
check cilium "tiefighter POST /v1/request-landing (Cilium YAML)" ALLOWED -- "${cil[@]}" --src "$tiefighter" --http "POST /v1/request-landing"
check cilium "tiefighter PUT /v1/exhaust-port (Cilium YAML)" DENIED -- "${cil[@]}" --src "$tiefighter" --http "PUT /v1/exhaust-port"

kafka=(-f examples/kafka --dst app=kafka --dport 9092)
check kafka "empire-hq produce empire-announce" ALLOWED -- "${kafka[@]}" --src app=empire-hq --kafka produce:empire-announce
check kafka "empire-outpost consume empire-announce" ALLOWED -- "${kafka[@]}" --src app=empire-outpost --kafka consume:empire-announce
check kafka "empire-outpost consume deathstar-plans" DENIED -- "${kafka[@]}" --src app=empire-outpost --kafka consume:deathstar-plans
check kafka "empire-outpost produce empire-announce" DENIED -- "${kafka[@]}" --src app=empire-outpost --kafka produce:empire-announce

grpc=(-f examples/grpc --src app=public-terminal --dst app=cc-door-mgr --dport 50051)
check grpc "DoorManager/GetName" ALLOWED -- "${grpc[@]}" --http "POST /cloudcity.DoorManager/GetName"
check grpc "DoorManager/SetAccessCode" DENIED -- "${grpc[@]}" --http "POST /cloudcity.DoorManager/SetAccessCode"

check dns "mediabot lookup api.github.com" ALLOWED -- -f examples/dns --src "$mediabot" --dst "$kubedns" --dport 53/UDP --dns api.github.com
check dns "mediabot HTTPS to unresolved 203.0.113.10" DENIED -- -f examples/dns --src "$mediabot" --dst-ip 203.0.113.10 --dport 443

admin=(-f examples/admin)
check admin "sandbox -> kube-dns lookup (Admin Allow)" ALLOWED -- "${admin[@]}" --src app=x,io.kubernetes.pod.namespace=sandbox --dst "$kubedns" --dport 53/UDP --dns example.com
check admin "sandbox -> kube-system etcd :2379 (Admin Deny)" DENIED -- "${admin[@]}" --src app=x,io.kubernetes.pod.namespace=sandbox --dst app=etcd,io.kubernetes.pod.namespace=kube-system --dport 2379
check admin "default -> team-a :80 (Pass, Baseline Deny)" DENIED -- "${admin[@]}" --src app=x --dst app=web,io.kubernetes.pod.namespace=team-a --dport 80
check admin "team-a -> team-a :80 (Pass, mode default)" ALLOWED -- "${admin[@]}" --src app=x,io.kubernetes.pod.namespace=team-a --dst app=web,io.kubernetes.pod.namespace=team-a --dport 80

echo
echo "=== Why: portcullis policy trace -f examples/starwars --src $tiefighter --dst $deathstar --dport 80 --http 'PUT /v1/exhaust-port'"
echo
"$bin" policy trace -f examples/starwars --src "$tiefighter" --dst "$deathstar" --dport 80 --http "PUT /v1/exhaust-port"

if ((failures > 0)); then
	echo
	echo "demo: $failures verdict(s) differ from the expected ones" >&2
	exit 1
fi
