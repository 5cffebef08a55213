package localcluster

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// NodeReported reads p afresh into got and returns nil if node's agent
// reports p's current generation in force (its entry in status.nodes has
// that generation and no message); otherwise an error saying what it saw.
// got must be an empty object of p's kind.
func NodeReported(ctx context.Context, r client.Reader, node string, p, got v1alpha1.Policy) error {
	if err := r.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
		return err
	}
	for _, n := range got.PolicyStatus().Nodes {
		if n.Name != node {
			continue
		}
		if n.ObservedGeneration != got.GetGeneration() {
			return fmt.Errorf("node %s reports generation %d of %s, want %d", node, n.ObservedGeneration, got.GetName(), got.GetGeneration())
		}
		if n.Message != "" {
			return fmt.Errorf("node %s: %s %s: %s", node, got.GetNamespace(), got.GetName(), n.Message)
		}
		return nil
	}
	return fmt.Errorf("node %s has not reported %s (status.nodes %+v)", node, got.GetName(), got.PolicyStatus().Nodes)
}
