#!/usr/bin/env bash
# Installs the real peers the tests run against. Idempotent: built binaries are cached
# in $SPANSIEVE_PEERS_DIR (default ~/.cache/spansieve/peers) and reused between runs.
set -euo pipefail

PEERS_DIR="${SPANSIEVE_PEERS_DIR:-$HOME/.cache/spansieve/peers}"
mkdir -p "$PEERS_DIR/bin"

# Jaeger's module path lacks /v2, so its v2 binary (cmd/jaeger) ships inside the v1.x module
# versions. The module proxy reachable here serves tagged versions only (not arbitrary commits),
# and v1.76.0's go.mod has a replace line, which `go install pkg@version` refuses. So we build
# it from a throwaway main module that requires jaeger and repeats that replace line.
JAEGER_MODULE_VERSION=v1.76.0
TELEMETRYGEN_VERSION=v0.161.0
# The reference Collector for the benchmark (core and contrib at one release; see install_otelcol).
OTELCOL_VERSION=v0.160.0

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
# and later comparisons need. Bench-only peer: the tests never need it. Built under nice -n 19
# because it takes long and the machine may be shared. The module proxy here serves contrib only in
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
  description: spansieve's reference Collector (bench only)
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

# curl with HTTP/2 (nghttp2), one of the gRPC receiver's refusal-test clients.
install_curl() {
  if curl -V 2>/dev/null | grep -q HTTP2; then return; fi
  apt_install --no-install-recommends curl
}

want="${*:-jaeger}"
for peer in $want; do
  case "$peer" in
    jaeger) install_jaeger ;;
    telemetrygen) install_telemetrygen ;;
    otelcol) install_otelcol ;;
    prometheus) install_prometheus ;;
    chromium) install_chromium ;;
    tcpdump) install_tcpdump ;;
    curl) install_curl ;;
    # all: what the tests and the wire latency use; otelcol (bench only, a long build) is asked for by name.
    all) install_jaeger; install_telemetrygen; install_prometheus; install_chromium; install_tcpdump; install_curl ;;
    *) echo "install-peers: unknown peer '$peer'" >&2; exit 2 ;;
  esac
done
echo "$PEERS_DIR/bin"
