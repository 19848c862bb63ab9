#!/usr/bin/env bash
# Installs what the tests and the lab need on a fresh Debian machine. Idempotent: a second run
# checks and returns in seconds.
#   - Debian packages: etcd-server, bird2, frr, nftables, iproute2, arping, tcpdump, and for the
#     lab's real nodes containerd, runc, containernetworking-plugins
#   - Go tools at pinned versions into $(go env GOPATH)/bin: controller-gen, staticcheck, helm
#     (helm compiles for a few minutes on 2 cores, once); MetalLB v0.15.2's source (its CRDs and
#     samples, for the migration tests) into the Go module cache
#   - kube-apiserver, kubectl and for the lab's real cluster kube-controller-manager,
#     kube-scheduler, kubelet and kube-proxy built from the Go module proxy (hack/build-kube.sh), cached
#     under ${IRONLB_CACHE:-$HOME/.cache/ironlb}/<version>/
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(etcd-server bird2 frr nftables iproute2 arping tcpdump containerd runc containernetworking-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packaged daemons must not run on the host: the lab starts its own copies in namespaces.
  for svc in etcd bird frr containerd; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
  done
  pkill -x etcd 2>/dev/null || true
  pkill -x containerd 2>/dev/null || true
fi

gobin="$(go env GOPATH)/bin"
install_tool() { # name module@version [ldflags]
  local name=$1 mod=$2 ldflags=${3:-} stamp="$gobin/.$1.version"
  local want="$mod${ldflags:+ $ldflags}"
  if [[ -x "$gobin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then return; fi
  echo "install-deps: go install $mod"
  go install ${ldflags:+-ldflags="$ldflags"} "$mod"
  echo "$want" >"$stamp"
}
install_tool controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
install_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
# helm's release build stamps its version and the Kubernetes version of its client-go (v0.36 ->
# 1.36) into the binary; without them `helm version` says v3.21 and `helm template` assumes
# Kubernetes 1.20, below the chart's kubeVersion.
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=v3.21.4"
for pkg in chartutil lint/rules; do
  helm_ldflags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=36"
done
install_tool helm helm.sh/helm/v3/cmd/helm@v3.21.4 "$helm_ldflags"

# MetalLB's published release (CRDs and sample configuration) for the migration tests, into the Go
# module cache through the Go module proxy. The version is e2e/apiserver.MetalLBVersion; the tests
# download it themselves if this step did not run.
metallb_tmp=$(mktemp -d)
(cd "$metallb_tmp" && printf 'module fetch\n' >go.mod && go mod download go.universe.tf/metallb@v0.15.2)
rm -rf "$metallb_tmp"

hack/build-kube.sh
