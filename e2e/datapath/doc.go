// Package datapath holds the node agent's end-to-end tests (root only): a
// local cluster (internal/localcluster), the operator's status reconcilers
// in-process, the agent in-process (agent.Run) with its pins on a bpffs
// the test mounts in a temporary directory and its own proxy port, and real
// traffic between network-namespace pods.
//
// TestStarWarsL3L4: the Star Wars L3/L4 policy (the tiefighter reaches
// deathstar:80, the xwing is dropped, a DROPPED event from the xwing's
// address arrives and the verdict counter moves), namespace isolation,
// policy changes on new connections in both directions, a non-compiling
// update keeping the previous version with the message in status.nodes,
// Programmed=True from the operator after each realised generation, the
// Lease, the endpoint table and gauges, a restart with a denied flow probed
// continuously (none passes), deleting the policy restoring access, a
// deleted pod detached.
//
// TestLockdown runs the agent with a 16-entry policy map: a policy that
// does not fit locks the server down (its allowed flow stops), with the
// Warning Event on the Pod, the counter, the state and the status.nodes
// message, and deleting the policy lifts it.
//
// TestVisibility runs the CLI users run (built by the test) against the
// agent's API socket: endpoint list (JSON and text) shows the three Star
// Wars pods ready, ingress enforced only for the deathstar; monitor -o json
// shows a FORWARDED and a DROPPED event with both pods, both sides' labels,
// ingress, TCP, port 80 and the policy (`TrafficPolicy empire/rule1
// spec.ingress[0]…`, `… (default deny)`); policy trace --live says ALLOWED
// and DENIED naming the pods; a trace leaves no endpoint behind; the
// socket is 0600 and gone once the agent stops, and the CLI then says the
// agent is not running.
//
// TestPolicyCases runs the remaining cases on one cluster, each in a
// namespace of its own, with the test process as a real client and server
// inside the pods' namespaces, so that a drop shows as a dial timeout of
// 1 s and a refusal counts as a failure:
//
//   - default deny on first selection: a flow that passed stops once a
//     policy selects the server for something else; the server's
//     unselected egress stays open;
//   - a port range 8000–8010: 8000, 8005 and 8010 pass, 7999 and 8011 do
//     not;
//   - deny precedence: allow from all plus an explicit allow, and an
//     ingressDeny of one peer on one port: only that flow drops, with a
//     DROPPED policy event;
//   - toCIDRSet with except towards two "external" addresses of
//     10.244.0.0/16 that are no pod's (localcluster.AddHost): the excepted
//     one drops, the other passes, a pod inside the prefix is not
//     selected;
//   - the host entity: fromEntities [host] admits the node's own traffic;
//   - the namespace annotation policy.portcullis.dev/audit-mode: a denied
//     flow passes every time and an AUDITED event arrives;
//   - a new deny cutting an established connection (its next write is not
//     echoed, each retransmission is a DROPPED event) while an open
//     connection the other way keeps working (its replies travel the
//     denied direction and ride the flow entry);
//   - an established direct connection that keeps working after its port
//     becomes an L7 port, while new connections to it are redirected to
//     the agent's proxy (REDIRECTED);
//   - then, restarting the agent on the same pins: AuditMode (a
//     default-denied and an explicitly denied flow pass with AUDITED
//     events), EnforcementMode=always (a pod no policy selects is
//     unreachable) and never (every denied flow of the earlier cases
//     passes).
//
// The tests take about 60 s together (go test ./e2e/datapath/ -v, root).
// Cleanup, also on failure, removes the datapath, unmounts the bpffs and
// checks that the number of proxy ip rules is unchanged; the local cluster
// removes its namespaces and links.
package datapath
