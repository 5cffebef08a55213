// Command demo is `make demo`: it brings up the local cluster
// (internal/localcluster), starts the operator (bin/portcullis-operator) if it
// has been built, makes the pods of the examples as network namespaces,
// applies examples/ with kubectl, shows the policies with the status the
// operator gave them, runs the node agent in-process (agent.Run on a bpffs
// it mounts, with its API socket) and shows `portcullis endpoint list`,
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
// To extend the traffic: add a scenario value to the list that run walks.
//
// It needs root, and runs from the repository root after `make build tools`:
//
//	go run ./hack/demo [-v] [-operator bin/portcullis-operator] [-kubectl bin/kubectl]
//
// Exit status: 0 on success, 1 on failure (including a verdict or a traffic
// outcome that differs from the expected one), 130 when interrupted.
package main
