#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): install what weave needs, build it, and
# run the demo (a router in a network namespace, containers attached through the CNI plugin).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
node scripts/demo.mjs
