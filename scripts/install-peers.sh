#!/usr/bin/env bash
# Installs the real peers the tests run against. Idempotent: built binaries are cached
# in $SPANSIEVE_PEERS_DIR (default ~/.cache/spansieve/peers) and reused between runs.
set -euo pipefail

PEERS_DIR="${SPANSIEVE_PEERS_DIR:-$HOME/.cache/spansieve/peers}"
mkdir -p "$PEERS_DIR/bin"
# One install at a time per cache: two test runs on one machine must not build into it at once.
exec 9>"$PEERS_DIR/.install.lock"
flock 9

# Jaeger's module path lacks /v2, so its v2 binary (cmd/jaeger) ships inside the v1.x module
# versions. The module proxy reachable here serves tagged versions only (not arbitrary commits),
# and v1.76.0's go.mod has a replace line, which `go install pkg@version` refuses. So we build
# it from a throwaway main module that requires jaeger and repeats that replace line.
JAEGER_MODULE_VERSION=v1.76.0
TELEMETRYGEN_VERSION=v0.161.0
# The reference Collector for the benchmark and tests (core and contrib at one release; see install_otelcol).
OTELCOL_VERSION=v0.160.0
# helm, for the chart's lint and render test (deploy/helm/spansieve).
HELM_VERSION=v3.22.0
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

install_jaeger() {
  local stamp="$PEERS_DIR/bin/.jaeger-$JAEGER_MODULE_VERSION"
  if [[ -x "$PEERS_DIR/bin/jaeger" && -f "$stamp" ]]; then return; fi
  echo "install-peers: building jaeger (module $JAEGER_MODULE_VERSION; first run only, takes minutes)" >&2
  local work
  work=$(mktemp -d)
  # The checksum database is not reachable for every module through the proxy here.
  export GOSUMDB=off GOFLAGS=-mod=mod
  (
    cd "$work"
    go mod init spansieve.local/jaeger-build >/dev/null 2>&1
    go mod edit -require="github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" \
      -replace=github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
    go mod download github.com/jaegertracing/jaeger
    go get "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_MODULE_VERSION"
    go build -o "$PEERS_DIR/bin/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
  )
  rm -rf "$work"
  touch "$stamp"
}

# A reference Collector built with the Collector's own builder from the module proxy: Jaeger's build
# lacks file_storage (and servicegraph, probabilistic_sampler, bearertokenauth), which the benchmark
# and the tests against a Collector (bearertokenauth both ways) need. Built under nice -n 19 because
# it takes long and the machine may be shared. The module proxy here serves contrib only in
# part ("403 Forbidden ... This module version is not available"): at v0.165.0 filterprocessor needs
# pkg/ottl/contexts/xprofile, which it refuses, so the release is v0.160.0 (builder, core and
# contrib alike), where it refuses exporter/prometheusexporter; servicegraphconnector is refused at
# both. Those two are left out.
install_otelcol() {
  local stamp="$PEERS_DIR/bin/.otelcol-$OTELCOL_VERSION"
  if [[ -x "$PEERS_DIR/bin/otelcol" && -f "$stamp" ]]; then return; fi
  echo "install-peers: building otelcol (builder and modules $OTELCOL_VERSION; first run only, takes minutes)" >&2
  local work core=go.opentelemetry.io/collector contrib=github.com/open-telemetry/opentelemetry-collector-contrib
  work=$(mktemp -d)
  # A module the proxy refuses fails the build: do not leave the sources behind.
  trap 'rm -rf "$work"' EXIT
  export GOSUMDB=off GOFLAGS=-mod=mod
  GOBIN="$work/bin" nice -n 19 go install "$core/cmd/builder@$OTELCOL_VERSION"
  cat >"$work/manifest.yaml" <<EOF
dist:
  name: otelcol
  description: spansieve's reference Collector (benchmark and tests)
  module: spansieve.local/otelcol
  output_path: $work/out
receivers:
  - gomod: $core/receiver/otlpreceiver $OTELCOL_VERSION
processors:
  - gomod: $core/processor/batchprocessor $OTELCOL_VERSION
  - gomod: $core/processor/memorylimiterprocessor $OTELCOL_VERSION
  - gomod: $contrib/processor/filterprocessor $OTELCOL_VERSION
  - gomod: $contrib/processor/tailsamplingprocessor $OTELCOL_VERSION
  - gomod: $contrib/processor/probabilisticsamplerprocessor $OTELCOL_VERSION
connectors:
  - gomod: $contrib/connector/spanmetricsconnector $OTELCOL_VERSION
exporters:
  - gomod: $core/exporter/otlpexporter $OTELCOL_VERSION
  - gomod: $core/exporter/otlphttpexporter $OTELCOL_VERSION
  - gomod: $core/exporter/debugexporter $OTELCOL_VERSION
extensions:
  - gomod: $contrib/extension/storage/filestorage $OTELCOL_VERSION
  - gomod: $contrib/extension/bearertokenauthextension $OTELCOL_VERSION
  - gomod: $contrib/extension/healthcheckextension $OTELCOL_VERSION
EOF
  # The builder runs go mod tidy and go build; both inherit the low priority.
  nice -n 19 "$work/bin/builder" --config "$work/manifest.yaml"
  mv "$work/out/otelcol" "$PEERS_DIR/bin/otelcol"
  rm -rf "$work"
  trap - EXIT
  touch "$stamp"
}

install_telemetrygen() {
  local stamp="$PEERS_DIR/bin/.telemetrygen-$TELEMETRYGEN_VERSION"
  if [[ -x "$PEERS_DIR/bin/telemetrygen" && -f "$stamp" ]]; then return; fi
  echo "install-peers: building telemetrygen@$TELEMETRYGEN_VERSION" >&2
  GOBIN="$PEERS_DIR/bin" go install \
    "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION"
  touch "$stamp"
}

# helm from the module proxy, and k8s-validate (scripts/k8s-validate), which decodes rendered
# manifests strictly into the Kubernetes API types; rebuilt when its source changes.
install_helm() {
  local stamp="$PEERS_DIR/bin/.helm-$HELM_VERSION-k8s1.37"
  if [[ ! -x "$PEERS_DIR/bin/helm" || ! -f "$stamp" ]]; then
    echo "install-peers: building helm $HELM_VERSION (first run only, a few minutes)" >&2
    # As helm's Makefile does: without these, helm reports v1.20 as the Kubernetes version that
    # `helm template` and `helm lint` render for (k8s.io/api is v0.37 in helm's go.mod).
    local h=helm.sh/helm/v3
    local ldflags="-X $h/internal/version.version=$HELM_VERSION"
    ldflags+=" -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=37"
    ldflags+=" -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=37"
    GOSUMDB=off GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$PEERS_DIR/bin" nice -n 10 \
      go install -ldflags "$ldflags" "$h/cmd/helm@$HELM_VERSION"
    touch "$stamp"
  fi
  local src="$SCRIPTS_DIR/k8s-validate" sum
  sum=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
  if [[ ! -x "$PEERS_DIR/bin/k8s-validate" || ! -f "$PEERS_DIR/bin/.k8s-validate-$sum" ]]; then
    echo "install-peers: building k8s-validate" >&2
    (cd "$src" && GOSUMDB=off GOFLAGS="-mod=mod -buildvcs=false" nice -n 10 go build -o "$PEERS_DIR/bin/k8s-validate" .)
    rm -f "$PEERS_DIR/bin"/.k8s-validate-*
    touch "$PEERS_DIR/bin/.k8s-validate-$sum"
  fi
}

if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi

# apt-get install [apt options] packages..., as root or through sudo.
apt_install() {
  echo "install-peers: apt-get install ${*: -1}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

install_prometheus() {
  if command -v prometheus >/dev/null 2>&1; then return; fi
  apt_install --no-install-recommends prometheus
  # Debian starts the packaged service; the tests run their own instances.
  $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
}

# Debian's chromium, for the admin page's browser test (driven by playwright-core, which brings no
# browser of its own). The tests find it through SPANSIEVE_CHROMIUM_BIN (default /usr/bin/chromium).
install_chromium() {
  if [[ -x /usr/bin/chromium ]]; then return; fi
  apt_install chromium
}

# tcpdump, for the benchmark's wire latency (bench/wire.ts; capturing needs root or CAP_NET_RAW).
install_tcpdump() {
  if command -v tcpdump >/dev/null 2>&1; then return; fi
  apt_install --no-install-recommends tcpdump
}

# podman (Debian's, with runc) and a stand-in Node 20 base image for the image and compose tests
# (test/deploy/). Base images cannot be pulled on every machine, so the stand-in is built locally:
# a minbase Debian bookworm root file system from mmdebstrap (cached as a tarball), imported, plus
# this machine's node, npm and CA bundle (scripts/podman/node-base.Containerfile). Rebuilt when the
# node version changes. docker-compose (v1, without its docker.io recommendation) only checks the
# compose files (`docker-compose config`); podman-compose runs them.
PODMAN_MINBASE=localhost/spansieve-bookworm-minbase:latest
PODMAN_NODE_BASE=localhost/spansieve-node-base:20
install_podman() {
  local here missing=()
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  export CONTAINERS_CONF="$here/podman/containers.conf"
  # iptables: netavark (a container network, compose) runs it, and podman only suggests it; without
  # it a container is created but never starts ("netavark: No such file or directory").
  for tool in podman runc mmdebstrap slirp4netns podman-compose iptables; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]] || missing+=("$tool")
  done
  if ((${#missing[@]} > 0)); then apt_install podman runc slirp4netns netavark aardvark-dns iptables mmdebstrap podman-compose; fi
  command -v docker-compose >/dev/null 2>&1 || apt_install --no-install-recommends docker-compose
  local dir="$PEERS_DIR/image" node_version
  mkdir -p "$dir"
  if ! podman image exists "$PODMAN_MINBASE"; then
    if [[ ! -s "$dir/bookworm-minbase.tar" ]]; then
      echo "install-peers: mmdebstrap bookworm (minbase; first run only, one to five minutes)" >&2
      $SUDO mmdebstrap --quiet --format=tar --variant=minbase --include=ca-certificates bookworm "$dir/bookworm-minbase.tar.part"
      mv "$dir/bookworm-minbase.tar.part" "$dir/bookworm-minbase.tar"
    fi
    podman import --quiet "$dir/bookworm-minbase.tar" "$PODMAN_MINBASE" >/dev/null
  fi
  node_version="$(node --version)"
  if [[ "$(podman image inspect --format '{{index .Labels "spansieve.node"}}' "$PODMAN_NODE_BASE" 2>/dev/null)" != "$node_version" ]]; then
    echo "install-peers: building the stand-in base image $PODMAN_NODE_BASE (node $node_version)" >&2
    local ctx node_bin npm_dir
    ctx=$(mktemp -d)
    node_bin="$(command -v node)"
    npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
    cp "$(readlink -f "$node_bin")" "$ctx/node"
    cp -r "$npm_dir" "$ctx/npm"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
    cp "$here/podman/node-base.Containerfile" "$ctx/Containerfile"
    podman build --quiet --pull=never --network host --label "spansieve.node=$node_version" \
      --build-arg "BASE=$PODMAN_MINBASE" -t "$PODMAN_NODE_BASE" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
}

# curl with HTTP/2 (nghttp2), one of the gRPC receiver's refusal-test clients.
install_curl() {
  if curl -V 2>/dev/null | grep -q HTTP2; then return; fi
  apt_install --no-install-recommends curl
}

want="${*:-jaeger}"
# Go builds first, in the background and concurrently with each other and with apt: on a fresh
# machine Jaeger and the Collector take minutes each, and building them one after the other would
# add the two. Concurrent `go` commands share the module and build caches safely (Go locks them).
# Their output goes to stderr; stdout carries only the bin directory (run-tests.js reads it).
go_peers=() apt_peers=()
for peer in $want; do
  case "$peer" in
    jaeger | otelcol | telemetrygen | helm) go_peers+=("$peer") ;;
    prometheus | chromium | tcpdump | podman | curl) apt_peers+=("$peer") ;;
    # all: everything the tests and the benchmark's wire latency use.
    all) go_peers+=(jaeger otelcol telemetrygen helm); apt_peers+=(prometheus chromium tcpdump podman curl) ;;
    *) echo "install-peers: unknown peer '$peer'" >&2; exit 2 ;;
  esac
done
pids=() names=()
for peer in "${go_peers[@]}"; do
  ("install_$peer" >&2) &
  pids+=($!) names+=("$peer")
done
failed=()
# apt serialises itself (its lock): one package after the other, while the Go builds run. Each
# runs in a subshell started on its own (not as the left side of ||, where bash would ignore set -e
# inside it) and is then waited for.
for peer in "${apt_peers[@]}"; do
  ("install_$peer" >&2) &
  wait $! || failed+=("$peer")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done
if ((${#failed[@]} > 0)); then
  echo "install-peers: failed to install: ${failed[*]}" >&2
  exit 1
fi
echo "$PEERS_DIR/bin"
