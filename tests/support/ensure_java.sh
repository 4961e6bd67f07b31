#!/usr/bin/env bash
# Install a Java runtime for PySpark (the Spark equality test, tests/test_spark.py), if
# missing: Debian's openjdk-17-jre-headless. Idempotent; needs root (or sudo) and Debian's
# package archive. Used by `make test`.
set -euo pipefail

if command -v java >/dev/null 2>&1 || [ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; then
    echo "ensure_java: $(java -version 2>&1 | head -1) present"
    exit 0
fi
package=openjdk-17-jre-headless
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    echo "ensure_java: need root to install $package (apt-get install -y $package)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_java: no apt-get; install a Java runtime 17+ with this system's package manager" >&2
    exit 1
fi
start=$(date +%s)
echo "ensure_java: installing $package ..."
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq "$package" >/dev/null
command -v java >/dev/null 2>&1 || { echo "ensure_java: java still missing" >&2; exit 1; }
echo "ensure_java: $(java -version 2>&1 | head -1) ready in $(( $(date +%s) - start ))s"
