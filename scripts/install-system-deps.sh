#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: a real OCI registry (distribution 2.8) and skopeo,
# the reference client of the build-throughput benchmark; containerd (ctr) and podman, the engines
# `make bench` measures our builds and starts against. Installs only what is missing.
set -euo pipefail
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
# Container groups of the local backend run on crun; the runnable demo images are built from
# Debian's static busybox (its binary replaces /bin/busybox).
command -v crun >/dev/null || need+=(crun)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need+=(busybox-static)
# The containers' seccomp profile: podman's, which the runtime reads from this file (no
# container starts without it).
[[ -f /usr/share/containers/seccomp.json ]] || need+=(golang-github-containers-common)
# The emulator's conformance tests run the official Node SDK, the plugin's TypeScript program
# runs on Node.js (Go is needed by the Pulumi build).
command -v npm >/dev/null || need+=(nodejs npm)
# The benchmark's anchors: each runs as a process the benchmark starts, never as a service.
command -v containerd >/dev/null || need+=(containerd)
command -v podman >/dev/null || need+=(podman)
if ((${#need[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
