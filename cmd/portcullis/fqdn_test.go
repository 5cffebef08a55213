package main

import (
	"bytes"
	"testing"
	"text/tabwriter"

	"portcullis.dev/portcullis/agentclient"
)

func TestFQDNTable(t *testing.T) {
	var b bytes.Buffer
	err := writeTable(&b, func(tw *tabwriter.Writer) {
		fqdnTable(tw, []agentclient.FQDNCacheEntry{
			{Name: "api.example.com", Endpoint: "default/mediabot", IP: "10.244.0.3", TTL: 3599},
			{Name: "api.example.com", Endpoint: "default/mediabot", IP: "10.244.0.4", TTL: 12},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `NAME             ENDPOINT          IP          TTL
api.example.com  default/mediabot  10.244.0.3  3599
api.example.com  default/mediabot  10.244.0.4  12
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
