#!/usr/bin/env bash
# Installs what weave and its test suite need on Debian 12 (run as root): the kernel tools the
# router and the CNI plugin call, the real container runtimes the tests drive, and the
# toolchain for the one native module (better-sqlite3); then the npm packages (npm ci builds).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  iproute2 iptables ipset util-linux iputils-ping iputils-arping procps conntrack \
  containernetworking-plugins podman runc containerd busybox-static \
  iperf3 tcpdump dnsmasq-base \
  python3 make g++ ca-certificates
npm ci
