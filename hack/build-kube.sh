#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and the lab run (kube-apiserver, kubectl, and for the
# lab's real cluster kube-controller-manager, kube-scheduler, kubelet, kube-proxy) from the Go
# module proxy at a pinned Kubernetes version and caches them outside the repository. Builds only
# what is missing; prints nothing and returns at once when the cache is warm.
#
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths
# that a module download does not have; a scratch module replaces each one with the published
# k8s.io/<name> v0.<minor>.<patch> instead (DESIGN.md sections 6 and 8).
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.37.1}
cache=${IRONLB_CACHE:-$HOME/.cache/ironlb}/$KUBE_VERSION
cmds=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
missing=()
for c in "${cmds[@]}"; do
  [[ -x $cache/$c ]] || missing+=("$c")
done
if ((${#missing[@]} == 0)); then exit 0; fi

staging_version="v0.${KUBE_VERSION#v1.}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"
cd "$work"
echo "build-kube: building ${missing[*]} $KUBE_VERSION (about 5 minutes on 2 cores from a cold cache)"
go mod init ironlb.local/kubebuild >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null
kmod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
# Every staging module that k8s.io/kubernetes requires at v0.0.0.
for m in $(awk '$1 ~ /^k8s.io\// && $2 == "v0.0.0" {print $1}' "$kmod" | sort -u); do
  go mod edit -replace="$m=$m@$staging_version"
done
{
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  for c in "${missing[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
  printf ')\n'
} >tools.go
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
for c in "${missing[@]}"; do
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$cache/$c.tmp" "$cache/$c"
done
echo "build-kube: cached in $cache"
