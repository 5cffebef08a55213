package http

import "testing"

func TestGRPCPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"access denied by TrafficPolicy default/web": "access denied by TrafficPolicy default/web",
		"100% sure":   "100%25 sure",
		"line\nbreak": "line%0Abreak",
		"caf\u00e9":   "caf%C3%A9",
	} {
		if got := grpcPercentEncode(in); got != want {
			t.Errorf("grpcPercentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}
