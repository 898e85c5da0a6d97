#!/usr/bin/env bash
# Installs what weave and its test suite need on Debian 12 (run as root): the kernel tools the
# router and the CNI plugin call, the real container runtimes the tests drive, and the
# toolchain for the one native module (better-sqlite3); then the npm packages (npm ci builds).
set -euo pipefail
cd "$(dirname "$0")/.."
# weave runs on Node.js 20 or later, with npm; Debian 12's own nodejs package is 18.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 ||
  [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "weave needs Node.js 20 or later with npm (Debian 12's nodejs package is 18): install it first," >&2
  echo "for example from NodeSource (https://github.com/nodesource/distributions)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  iproute2 iptables ipset util-linux iputils-ping iputils-arping procps conntrack \
  containernetworking-plugins podman runc containerd busybox-static \
  iperf3 tcpdump dnsmasq-base \
  python3 make g++ ca-certificates
npm ci
