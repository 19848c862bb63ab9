# syntax=docker/dockerfile:1
# ghcr.io/ironlb/ironlb-controller: the controller as a static binary on distroless, run as the
# image's nonroot user (65532). Build from the repository root:
#   docker build -f build/controller.Dockerfile -t ghcr.io/ironlb/ironlb-controller:0.1.0 .
# (docker buildx build --platform linux/amd64,linux/arm64 ... cross-compiles; no emulation.)
# `make images` makes the same image without Docker (internal/images; its dockerfile_test.go
# checks that the two agree: binary, user, entrypoint, environment, ports, build flags).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ironlb-controller ./cmd/ironlb-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ironlb-controller /usr/local/bin/ironlb-controller
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
EXPOSE 7472
ENTRYPOINT ["/usr/local/bin/ironlb-controller"]
