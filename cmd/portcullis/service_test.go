package main

import (
	"bytes"
	"testing"
	"text/tabwriter"

	"portcullis.dev/portcullis/agentclient"
)

func TestServiceTable(t *testing.T) {
	var b bytes.Buffer
	err := writeTable(&b, func(tw *tabwriter.Writer) {
		serviceTable(tw, []agentclient.Service{
			{Namespace: "default", Name: "deathstar", Frontend: "10.96.0.20:80", Protocol: "TCP", Backends: []agentclient.ServiceBackend{
				{Address: "10.244.0.2:80", Pod: "default/deathstar-1"}, {Address: "10.244.0.9:80"}}},
			{Namespace: "kube-system", Name: "kube-dns", PortName: "dns", Frontend: "10.96.0.10:53", Protocol: "UDP"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE/SERVICE     PORT  FRONTEND           BACKEND                      POD
default/deathstar           10.96.0.20:80/TCP  10.244.0.2:80/TCP            default/deathstar-1
                                               10.244.0.9:80/TCP
kube-system/kube-dns  dns   10.96.0.10:53/UDP  (none: connections refused)
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
