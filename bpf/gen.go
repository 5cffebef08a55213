package bpf

// The generated datapath_bpfel.go and datapath_bpfel.o are committed, so
// building needs no clang; `make generate` (or go generate ./bpf/...)
// rebuilds them with Debian's clang and libbpf-dev.
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event -type service_key -type service_value -type backend -type lb_flow -type direction -type verdict -type endpoint_flags -type mark -type reserved_identity -type event_verdict -type event_reason -type ct_path -type policy_prefix datapath datapath.c -- -I/usr/include/x86_64-linux-gnu
