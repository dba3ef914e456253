#!/usr/bin/env bash
# Installs what building and testing pipewarden needs and a fresh machine may
# lack: the C libraries librdkafka is built against (TLS, SASL, compression,
# curl for OAUTHBEARER/OIDC), cmake, the openssl command (the secured test
# broker's and registry's certificates), and checks for Rust, Java 17 and Maven.
# Idempotent: only missing Debian packages are installed (as root, or with
# sudo when available).
set -euo pipefail

packages=(curl cmake pkg-config openssl libssl-dev libsasl2-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev python3-yaml)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "deps: missing packages ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo java mvn; do
  if ! command -v "$tool" >/dev/null; then
    echo "deps: $tool is required (Rust toolchain, Java 17, Maven)" >&2
    exit 1
  fi
done
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
if [ "${java_major%%.*}" -lt 17 ] 2>/dev/null; then
  echo "deps: Java 17 or newer is required (found $java_major)" >&2
  exit 1
fi
# The local schema registry (Apicurio 3) needs Java 21 or newer beside the
# broker's Java 17; scripts/registry.sh finds it in /usr/lib/jvm.
found21=0
for java in "${REGISTRY_JAVA_HOME:-/nonexistent}/bin/java" /usr/lib/jvm/*/bin/java; do
  [ -x "$java" ] || continue
  major=$("$java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  if [ "${major%%.*}" -ge 21 ] 2>/dev/null; then found21=1; break; fi
done
if [ "$found21" = 0 ] && [ -z "${SCHEMA_REGISTRY_URL:-}" ]; then
  # Only the tests need the registry (the demo reads schemas/): warn here,
  # scripts/registry.sh fails with the same message when it is started.
  echo "deps: warning: the local schema registry needs Java 21 or newer (set REGISTRY_JAVA_HOME, or point SCHEMA_REGISTRY_URL at a registry)" >&2
fi
# Only the span export tests need Go (scripts/otel.sh builds the OTLP
# collector with it): warn here, scripts/otel.sh fails with the same message.
if ! command -v go >/dev/null && [ -z "${OTLP_GRPC_ENDPOINT:-}" ]; then
  echo "deps: warning: the span tests' OTLP collector is built with Go 1.26 or newer (or point OTLP_GRPC_ENDPOINT, OTLP_HTTP_ENDPOINT and OTEL_TRACES_FILE at a collector)" >&2
fi
echo "deps: ok"
