# syntax=docker/dockerfile:1
# ghcr.io/ironlb/ironlb-speaker: the speaker as a static binary on Debian slim with nft, which
# the forwarding code runs (one `nft -f -` transaction per change, `nft -j list` to detect
# kube-proxy). It runs as root with only NET_RAW and NET_ADMIN (the chart drops every other
# capability). Build from the repository root:
#   docker build -f build/speaker.Dockerfile -t ghcr.io/ironlb/ironlb-speaker:0.1.0 .
# `make images` makes the same image without Docker, with nft and its libraries from the build
# machine's Debian (internal/images; its dockerfile_test.go checks that the two agree: binary,
# nft, user, entrypoint, environment, ports, build flags, Debian release).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ironlb-speaker ./cmd/ironlb-speaker

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ironlb-speaker /usr/local/bin/ironlb-speaker
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 7473 7946/tcp 7946/udp
ENTRYPOINT ["/usr/local/bin/ironlb-speaker"]
