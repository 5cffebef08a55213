# syntax=docker/dockerfile:1
# The node agent image: a static Go binary on distroless, without a shell.
#
#   docker build -f build/agent.Dockerfile -t ghcr.io/portcullis-dev/portcullis-agent:v0.1.0 .
#
# The BPF objects are compiled by bpf2go ahead of time and committed, then
# embedded into the binary by go build, so the image needs no clang and no
# object files beside the binary.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# Same flags as the operator: static, no paths, no symbols. The generated
# *_bpfel.go files select the little-endian objects, so amd64 and arm64
# both build from the same tree.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags="-s -w" -o /out/portcullis-agent ./cmd/portcullis-agent

# The root variant of distroless static: no shell, no package manager, so
# an attacker who reaches the agent finds no tools to run.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/portcullis-agent /portcullis-agent
# Root (uid 0) on purpose: the agent needs CAP_BPF and CAP_NET_ADMIN in its
# effective set, and Kubernetes adds capabilities to the effective set only
# for uid 0 (it sets no ambient capabilities); the host's /sys/fs/bpf is
# also root-owned 0700. The DaemonSet drops every other capability, forbids
# privilege escalation and mounts the root filesystem read-only.
USER 0:0
ENTRYPOINT ["/portcullis-agent"]
