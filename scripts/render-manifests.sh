#!/usr/bin/env bash
# Renders the plain manifests from the Helm chart's default values (test/deploy/helm.test.ts checks
# that the committed file equals this output):
#   bash scripts/render-manifests.sh > deploy/kubernetes/spansieve.yaml
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
helm="${SPANSIEVE_HELM_BIN:-${SPANSIEVE_PEERS_DIR:-$HOME/.cache/spansieve/peers}/bin/helm}"
cat <<'HEADER'
# spansieve as a DaemonSet beside OBI: deploy/helm/spansieve rendered with its default values
# (release "spansieve", namespace "spansieve") by scripts/render-manifests.sh. Do not edit: change
# the chart and render again. See docs/kubernetes.md.
#   kubectl create namespace spansieve
#   kubectl apply -n spansieve -f deploy/kubernetes/spansieve.yaml
HEADER
"$helm" template spansieve "$root/deploy/helm/spansieve" --namespace spansieve
