#!/usr/bin/env bash
# Installs what idsync's demo, tests and benchmarks need on Debian (run as root; idempotent):
# OpenLDAP's slapd and client tools (real directory servers in tests), GNU time (peak RSS in benchmarks),
# and a C toolchain for crates that build C code (jemalloc, idsync's allocator, is built with cc and make).
set -euo pipefail
need=()
[[ -x /usr/sbin/slapd ]] || need+=(slapd)
command -v ldapsearch >/dev/null || need+=(ldap-utils)
[[ -x /usr/bin/time ]] || need+=(time)
command -v cc >/dev/null || need+=(build-essential)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # Don't let the package configure and start a system-wide slapd: tests start their own.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
echo "dependencies ok"
