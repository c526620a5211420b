#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager) from Go modules.
#
# Nothing prebuilt can be downloaded on the CI machines, but Go and its module proxy can be reached, so the
# binaries are compiled from the tiny modules beside this script (go.mod/go.sum pin every dependency).
# The first build takes many minutes on two cores (docs/testing.md); the results are cached outside the
# repository, keyed by version, so every later run (and every fresh clone on the same machine) only
# links them:
#
#   ${KUBERL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kuberl-tools}/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION/
#
# Usage: build.sh BIN_DIR   (symlinks etcd, kube-apiserver, kube-controller-manager into BIN_DIR)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${1:?usage: build.sh BIN_DIR}"
# Keep these in step with kubernetes/go.mod and etcd/go.mod (tests/unit/test_kube_build.py checks it).
K8S_VERSION="1.36.3"
ETCD_VERSION="3.6.16"
CACHE_ROOT="${KUBERL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kuberl-tools}"
CACHE="$CACHE_ROOT/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"

log() { printf '[kube-build] %s\n' "$*"; }

build() {  # build MODULE_DIR LDFLAGS PACKAGE... : the packages' binaries that are not cached yet
  local dir="$1" ldflags="$2" pkg out todo=()
  shift 2
  for pkg in "$@"; do
    [[ -x "$CACHE/${pkg##*/}" ]] || todo+=("$pkg")
  done
  ((${#todo[@]})) || return 0
  log "building ${todo[*]##*/} into $CACHE; the first time this takes many minutes"
  local start=$SECONDS tmp
  mkdir -p "$CACHE"
  # One `go build` for several binaries shares the packages they have in common. It writes into a
  # temporary folder, renamed into place, so an interrupted build never leaves a half-written binary
  # that a later run would take for a cached one.
  tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
  (cd "$HERE/$dir" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--p=2} -mod=readonly" \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "${todo[@]}")
  for pkg in "${todo[@]}"; do
    out="${pkg##*/}"
    mv -f "$tmp/$out" "$CACHE/$out"
  done
  rmdir "$tmp"
  log "built ${todo[*]##*/} in $((SECONDS - start)) s"
}

command -v go >/dev/null 2>&1 || { echo "go is required to build the test control plane (https://go.dev/dl/)" >&2; exit 1; }

# The version a binary reports comes from linker flags (k8s sets them in hack/lib/version.sh); without
# them the server says v0.0.0 and kubectl/helm version checks see a pre-release.
KV="k8s.io/component-base/version"
K8S_LDFLAGS="-X $KV.gitVersion=v$K8S_VERSION -X $KV.gitMajor=${K8S_VERSION%%.*}"
minor="${K8S_VERSION#*.}"
K8S_LDFLAGS+=" -X $KV.gitMinor=${minor%%.*} -X $KV.gitTreeState=clean -X $KV.buildDate=1970-01-01T00:00:00Z"

build etcd "" kuberl.local/etcd
build kubernetes "$K8S_LDFLAGS" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager

mkdir -p "$BIN"
for b in etcd kube-apiserver kube-controller-manager; do
  ln -sfn "$CACHE/$b" "$BIN/$b"
done
log "ready: etcd v$ETCD_VERSION, kube-apiserver and kube-controller-manager v$K8S_VERSION in $CACHE"
