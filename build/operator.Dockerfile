# syntax=docker/dockerfile:1
# The operator image: a static Go binary on distroless, as user nonroot.
#
#   docker build -f build/operator.Dockerfile -t ghcr.io/portcullis-dev/portcullis-operator:v0.1.0 .
#
# Multi-platform builds cross-compile on the build machine's platform
# (no emulation): docker buildx build --platform linux/amd64,linux/arm64 ...

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
# Dependencies first, in their own layer: source edits do not re-download.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# CGO_ENABLED=0: a static binary that runs on distroless/static (no libc).
# -trimpath: no build machine paths in the binary (reproducible, no leaks).
# -s -w: no symbol table or DWARF; stack traces still carry function names.
# GOFLAGS=-mod=readonly: the build fails rather than edit go.mod.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags="-s -w" -o /out/portcullis-operator ./cmd/portcullis-operator

# static: CA certificates, tzdata, /etc/passwd with nonroot; no shell, no
# package manager. The :nonroot tag defaults to uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis-operator /portcullis-operator
# Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/portcullis-operator"]
