package main

import (
	"bytes"
	"testing"
	"text/tabwriter"

	"portcullis.dev/portcullis/agentclient"
)

func TestEndpointTable(t *testing.T) {
	var b bytes.Buffer
	err := writeTable(&b, func(tw *tabwriter.Writer) {
		endpointTable(tw, []agentclient.Endpoint{
			{ID: 1, Namespace: "default", Pod: "deathstar", IP: "10.244.0.2", Identity: 301, State: "ready", IngressEnforced: true},
			{ID: 2, Namespace: "default", Pod: "xwing", IP: "10.244.0.4", Identity: 302, State: "lockdown", IngressEnforced: true, EgressEnforced: true, Audit: true, Message: "policy map full"},
			{ID: 3, Namespace: "default", Pod: "tiefighter", IP: "10.244.0.3", Identity: 0, State: "waiting-for-identity"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `ENDPOINT ID  NAMESPACE/POD       IP          IDENTITY  STATE                 ENFORCEMENT             MESSAGE
1            default/deathstar   10.244.0.2  301       ready                 ingress
2            default/xwing       10.244.0.4  302       lockdown              ingress+egress (audit)  policy map full
3            default/tiefighter  10.244.0.3  0         waiting-for-identity  none
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
