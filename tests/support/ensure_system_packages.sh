#!/usr/bin/env bash
# Install the system packages some tests need, if missing, in one apt-get run:
#   chromium, fonts-noto-cjk    the KPI review screenshots (tests/test_publish_report.py)
#   openjdk-17-jre-headless     PySpark, for the Spark equality test (tests/test_spark.py)
# Idempotent; needs root (or sudo) and Debian's package archive. Used by `make test`, and
# by tests/support/browser.py when chromium is not on PATH.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! { command -v fc-list >/dev/null 2>&1 && fc-list 2>/dev/null | grep -q "Noto Sans CJK"; }; then
    need+=(fonts-noto-cjk)
fi
if ! { command -v java >/dev/null 2>&1 || [ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; }; then
    need+=(openjdk-17-jre-headless)
fi
if [ "${#need[@]}" -eq 0 ]; then
    echo "ensure_system_packages: $(chromium --version 2>/dev/null), Noto CJK fonts and $(java -version 2>&1 | head -1) present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    echo "ensure_system_packages: need root to install ${need[*]} (apt-get install -y ${need[*]})" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_system_packages: no apt-get; install ${need[*]} with this system's package manager" >&2
    exit 1
fi

start=$(date +%s)
echo "ensure_system_packages: installing ${need[*]} ..."
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
for command in chromium java; do
    command -v "$command" >/dev/null 2>&1 || { echo "ensure_system_packages: $command still missing" >&2; exit 1; }
done
echo "ensure_system_packages: $(chromium --version 2>/dev/null) and $(java -version 2>&1 | head -1) ready in $(( $(date +%s) - start ))s"
