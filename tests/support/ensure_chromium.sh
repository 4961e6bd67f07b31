#!/usr/bin/env bash
# Install Debian's Chromium and the CJK fonts the KPI review screenshots need, if missing.
# Idempotent; needs root (or sudo) and Debian's package archive. Used by `make test` and by
# tests/test_publish_report.py when chromium is not on PATH.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! { command -v fc-list >/dev/null 2>&1 && fc-list 2>/dev/null | grep -q "Noto Sans CJK"; }; then
    need+=(fonts-noto-cjk)
fi
if [ "${#need[@]}" -eq 0 ]; then
    echo "ensure_chromium: $(chromium --version 2>/dev/null) and Noto CJK fonts present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    echo "ensure_chromium: need root to install ${need[*]} (apt-get install -y ${need[*]})" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no apt-get; install ${need[*]} with this system's package manager" >&2
    exit 1
fi

start=$(date +%s)
echo "ensure_chromium: installing ${need[*]} ..."
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "ensure_chromium: chromium still missing" >&2; exit 1; }
echo "ensure_chromium: $(chromium --version 2>/dev/null) ready in $(( $(date +%s) - start ))s"
