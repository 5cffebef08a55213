// Command demo is `make demo`: it brings up the local cluster
// (internal/localcluster), starts the operator (bin/portcullis-operator) if it
// has been built, makes the pods of the examples as network namespaces,
// their Services (deathstar, kafka-service, cc-door-server) and the
// cluster's kube-dns (CoreDNS at 10.96.0.10, answering cluster.local from
// the apiserver and forwarding nothing), applies examples/ with kubectl, shows the policies with the status the
// operator gave them, runs the node agent in-process (agent.Run on a bpffs
// it mounts, with its API socket) and shows `portcullis endpoint list` and
// `portcullis service list`,
// then runs each traffic scenario (scenario.go): applies its policies,
// starts its servers (internal/workloads) in their pods, drives real requests
// with curl from the client pods (a list of steps, each with the expected
// outcome) while `portcullis monitor` follows the verdicts, checks the
// monitor's lines and `portcullis policy trace --live`; then the L7 part
// (traffic.go): curl over HTTP/1.1 and HTTP/2, a grpc-go client, the
// header rule and a policy change under an open keep-alive connection,
// through the agent's proxy, each row checked; then Cilium's Kafka demo
// (kafka.go): a kfake broker, kcat and franz-go clients, denials as
// Kafka's "Topic authorization failed", a policy change under open
// connections, `portcullis monitor`'s Kafka lines; then it prints
// the verdict table of
// hack/demo.sh (portcullis policy trace over the demo's requests, offline)
// and tears everything down — processes, agent, datapath, bpffs, ip rule,
// cluster — also on error and on Ctrl-C. (A SIGKILL leaves the bpffs mount
// under $TMPDIR/portcullis-demo-bpffs-*; the next localcluster.Start
// removes the pods' namespaces and links.)
//
// The pods are those the examples select: the Star Wars deathstar,
// tiefighter and xwing, the Kafka broker and its clients, the gRPC door
// manager and terminal, the mediabot, CoreDNS as kube-system/coredns,
// and one pod each in the admin examples' sandbox and team-a namespaces.
// Our kinds from examples/ are applied with `kubectl apply --server-side`
// (not examples/cilium: the cilium.io CRDs are not installed), and the demo
// waits up to 20 s for the operator to set Accepted on every policy before
// showing `kubectl get tp,ctp,atp -A`. The agent runs as e2e/datapath runs
// it: its pins on a bpffs mounted in a temporary directory, its own proxy
// port, the proxy's ip rule owned by the demo, the API socket and agent.log
// in the cluster's temporary directory; it takes the e2e node lock first,
// so it never shares the ip rule with a running root e2e package, and says
// so when it waits (the wait is polled, so Ctrl-C reaches it).
//
// The first scenario is the Star Wars L3/L4 part: examples/starwars-l3l4
// (Cilium's sw_l3_l4_policy as rule1) replaces the L7 rule1, the
// tiefighter's `curl -X POST deathstar/v1/request-landing` gets 200 "Ship
// landed", the xwing's is dropped, and `portcullis monitor` shows the
// tiefighter's FORWARDED and the xwing's DROPPED verdicts with both sides'
// labels and rule1; then examples/starwars is applied again. The L7 part
// prints a table per scenario (client, request, expected, got): curl POST
// /v1/request-landing 200 "Ship landed" and PUT /v1/exhaust-port 403
// "Access denied" from the tiefighter, the xwing dropped; the same with
// `curl --http2-prior-knowledge`; the grpc-go client in the public
// terminal: GetName, GetLocation, RequestMaintenance OK, SetAccessCode and
// GetStatus PermissionDenied naming default/door-manager; examples/headers'
// X-Token rule (12345 200, 12a and none 403); and a keep-alive client whose
// request is allowed, then — after `kubectl patch` makes rule1 allow only
// GET /v1/ — denied on the same connection (it counts its dials), and
// allowed again once rule1 is patched back. Each row is retried for a few
// seconds until it gives the expected result (a policy reaches the proxy a
// sync after the apiserver has it); a row that never does, or a missing
// FORWARDED/DENIED monitor line, fails the demo. The monitor's L7 lines
// are printed after the tables. The TLS part follows Cilium's guide to
// inspecting TLS: openssl makes an internal CA (trusted by the mediabot,
// signing the certificate the proxy presents for api.example.com) and a
// public CA (the servers'); two hosts outside the cluster serve HTTPS;
// Secrets api-front and public-cas and policy mediabot-tls
// (terminatingTLS/originatingTLS with HTTP rules, and serverNames on
// 8443) are applied, and the demo waits for the operator's copies in
// portcullis-secrets. curl --cacert gets 200 for GET /public and 403 for
// /admin over TLS, openssl s_client -servername allowed.example.com
// verifies the server, denied.example.com gets "alert access denied", and
// the monitor shows the h2 requests and the server-name denial; without
// the operator the part is skipped with a note. A run takes about 21 s on a 2-core machine,
// without the wait for the lock.
//
// Every client calls its server by name, as users do:
// deathstar.default.svc.cluster.local, cc-door-server...:50051 and
// kafka-service...:9092 resolve through CoreDNS at the kube-dns ClusterIP,
// and the datapath translates both ClusterIPs to the backend pods before
// policy, so the verdicts, events and the proxy see the pods.
//
// To extend the traffic: add a scenario value to the list that run walks.
//
// It needs root, and runs from the repository root after `make build tools`:
//
//	go run ./hack/demo [-v] [-operator bin/portcullis-operator] [-kubectl bin/kubectl]
//
// Exit status: 0 on success, 1 on failure (including a verdict or a traffic
// outcome that differs from the expected one), 130 when interrupted.
package main
