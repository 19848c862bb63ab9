#!/usr/bin/env bash
# Builds kube-apiserver and kubectl from the Go module proxy at a pinned Kubernetes version and
# caches them outside the repository. Prints nothing and returns at once when the cache is warm.
#
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths
# that a module download does not have; a scratch module replaces each one with the published
# k8s.io/<name> v0.<minor>.<patch> instead (DESIGN.md section 7).
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.37.1}
cache=${IRONLB_CACHE:-$HOME/.cache/ironlb}/$KUBE_VERSION
if [[ -x $cache/kube-apiserver && -x $cache/kubectl ]]; then exit 0; fi

staging_version="v0.${KUBE_VERSION#v1.}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"
cd "$work"
echo "build-kube: building kube-apiserver and kubectl $KUBE_VERSION (a few minutes on a cold cache)"
go mod init ironlb.local/kubebuild >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null
kmod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
# Every staging module that k8s.io/kubernetes requires at v0.0.0.
for m in $(awk '$1 ~ /^k8s.io\// && $2 == "v0.0.0" {print $1}' "$kmod" | sort -u); do
  go mod edit -replace="$m=$m@$staging_version"
done
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
mv "$cache/kubectl.tmp" "$cache/kubectl"
echo "build-kube: cached in $cache"
