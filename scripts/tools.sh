#!/usr/bin/env bash
# Installs the tools the shipping tests use into .cache/tools/ (git-ignored),
# at pinned versions, from the package registries only:
#   promtool, prometheus  Debian's `prometheus` package, unpacked (not
#                         installed: no service is started)
#   helm                  go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION
#   kubeconform           go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION
#   k8s-schemas/          JSON schemas for kubeconform, made from Kubernetes'
#                         OpenAPI documents (Go module k8s.io/kubernetes) and
#                         the Prometheus Operator CRDs, so validation is offline
#
#   scripts/tools.sh install    install what is missing (idempotent)
#   scripts/tools.sh path       print the bin directory
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$root/.cache/tools"
BIN="$TOOLS/bin"
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VERSION=v1.37.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0

say() { echo "tools: $*"; }
die() { echo "tools: error: $*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null 2>&1 || [[ -x /usr/local/go/bin/go ]] || die "Go is needed (go install helm, kubeconform)"
  command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
}

install_prometheus() {
  [[ -x "$BIN/promtool" && -x "$BIN/prometheus" ]] && return 0
  say "unpacking Debian's prometheus package (promtool, prometheus)"
  local tmp
  tmp=$(mktemp -d)
  (
    cd "$tmp"
    if ! apt-get download prometheus >/dev/null 2>&1; then
      [[ "$(id -u)" -eq 0 ]] || die "apt-get download prometheus failed; run 'apt-get update' as root"
      apt-get update -qq && apt-get download prometheus >/dev/null 2>&1 || die "apt-get download prometheus failed"
    fi
    dpkg -x prometheus_*.deb x
  )
  mkdir -p "$BIN"
  cp "$tmp/x/usr/bin/promtool" "$tmp/x/usr/bin/prometheus" "$BIN/"
  rm -rf "$tmp"
  "$BIN/promtool" --version 2>&1 | head -1
}

install_go_tool() { # name module version
  [[ -x "$BIN/$1" ]] && return 0
  need_go
  say "go install $2@$3 (once; helm takes a few minutes on two cores)"
  local t0=$SECONDS
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$2@$3"
  say "$1 built in $((SECONDS - t0))s"
}

install_schemas() {
  [[ -f "$TOOLS/k8s-schemas/.complete-$KUBERNETES_VERSION" ]] && return 0
  need_go
  command -v python3 >/dev/null || die "python3 is needed to write the Kubernetes schemas"
  python3 -c 'import yaml' 2>/dev/null || die "python3 needs PyYAML (apt-get install python3-yaml)"
  say "writing Kubernetes $KUBERNETES_VERSION JSON schemas for kubeconform"
  local k8s operator
  k8s=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  operator=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$TOOLS/k8s-schemas"
  python3 "$root/scripts/tools/k8s_schemas.py" "$TOOLS/k8s-schemas" "$k8s/api/openapi-spec/v3" \
    "$operator/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$operator/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  touch "$TOOLS/k8s-schemas/.complete-$KUBERNETES_VERSION"
}

case "${1:-install}" in
  install)
    install_prometheus
    install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
    install_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
    install_schemas
    ;;
  path) echo "$BIN" ;;
  *) echo "usage: $0 install|path" >&2; exit 1 ;;
esac
