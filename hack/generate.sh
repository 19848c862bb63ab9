#!/usr/bin/env bash
# Regenerates what is derived from the API types in api/v1alpha1:
#   - api/v1alpha1/zz_generated.deepcopy.go (DeepCopy methods)
#   - charts/ironlb/crds/ironlb.io_*.yaml   (CustomResourceDefinitions, with the CEL rules)
# using controller-gen at the version hack/install-deps.sh pins. api/v1alpha1's staleness test
# runs the same generators into a temporary directory and fails when these files differ.
set -euo pipefail
cd "$(dirname "$0")/.."

controller_gen=$(command -v controller-gen || true)
if [[ -z $controller_gen ]]; then
  controller_gen="$(go env GOPATH)/bin/controller-gen"
fi
if [[ ! -x $controller_gen ]]; then
  echo "generate: controller-gen not found on PATH or in $(go env GOPATH)/bin; run hack/install-deps.sh" >&2
  exit 1
fi

crds=charts/ironlb/crds
mkdir -p "$crds"
# Remove old CRDs first so a deleted or renamed kind leaves no stale file behind.
rm -f "$crds"/ironlb.io_*.yaml
"$controller_gen" object paths=./api/... crd:crdVersions=v1 output:crd:dir="$crds"
