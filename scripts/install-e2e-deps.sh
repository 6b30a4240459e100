#!/usr/bin/env bash
# Installs, with apt-get, what the end-to-end suite and the benchmarks run: real Pushgateways, Go with
# client_golang, Python's prometheus_client, curl, nginx and wrk for the benchmark baselines, and prometheus
# for promtool, which checks docs/alerts.yml, openssl for the certificates of the TLS specs, dnsmasq-base, the DNS
# server the DNS discovery specs start on a loopback port (the binary only: Debian's `dnsmasq` package would also
# start a system service on port 53), and chromium, the headless browser that loads the fleet page.
# Safe to run again: it does nothing when everything is there.
set -euo pipefail
packages=(prometheus-pushgateway golang-go golang-github-prometheus-client-golang-dev python3-prometheus-client curl nginx wrk prometheus openssl dnsmasq-base chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-e2e-deps: all present (${packages[*]})"
  exit 0
fi
echo "install-e2e-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; the suite runs its own on free ports, so stop those if they started.
for service in prometheus-pushgateway nginx prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    $sudo systemctl stop "$service" || true
  fi
done
echo "install-e2e-deps: done"
