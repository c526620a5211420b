#!/usr/bin/env bash
# Copy the generated CRDs (crds/, from `python -m kuberl.spec.crd`) into the Helm chart, which must
# ship them unchanged (tests/helm checks that the two directories are identical).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/charts/kuberl/crds"
mkdir -p "$DEST"
find "$DEST" -maxdepth 1 -name '*.yaml' -delete
cp "$ROOT"/crds/*.yaml "$DEST"/
echo "synced: $(cd "$DEST" && ls ./*.yaml | tr '\n' ' ')"
