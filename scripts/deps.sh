#!/usr/bin/env bash
# Installs what building and testing pipewarden needs and a fresh machine may
# lack: the C libraries librdkafka is built against (TLS, SASL, compression,
# curl for OAUTHBEARER/OIDC), cmake, and checks for Rust, Java 17 and Maven.
# Idempotent: only missing Debian packages are installed (as root, or with
# sudo when available).
set -euo pipefail

packages=(cmake pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev)
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
echo "deps: ok"
