#!/usr/bin/env bash
# Installs the real tools the tests run: promtool, amtool, prometheus,
# alertmanager, node_exporter and blackbox_exporter, and openssl for test
# certificates (Debian packages).
set -euo pipefail

packages=(prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter openssl)
binaries=(promtool amtool prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter openssl)

missing=0
for b in "${binaries[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
[ "$missing" = 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "The tests need ${packages[*]} (Debian/Ubuntu packages); install them with your package manager." >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "Installing ${packages[*]} ..." >&2
$sudo apt-get update -qq
# The packages start system services on install; the tests start their own processes.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
for service in prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter; do
  $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
done
