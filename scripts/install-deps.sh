#!/bin/sh
# Installs the Debian packages ramp needs, when any is missing. As root it runs apt-get itself;
# otherwise it prints the exact command to run and fails.
set -eu
# Build: compiler, Open MPI, BLAS, protobuf-c, libsvm, Criterion, jansson, libmicrohttpd, PCRE2.
# Tests: curl (HTTP checks), nodejs + npm (the `openai` npm client), gnuplot-nox (plots).
# (The Slurm test installs slurm and munge itself; they are not needed otherwise.)
packages="build-essential pkg-config openmpi-bin libopenmpi-dev libopenblas-dev protobuf-c-compiler
libprotobuf-c-dev libsvm-dev libcriterion-dev libjansson-dev libmicrohttpd-dev libpcre2-dev
curl nodejs npm gnuplot-nox"
missing=""
for p in $packages; do
    # NodeSource's nodejs package carries npm itself and conflicts with Debian's npm package.
    [ "$p" = npm ] && command -v npm >/dev/null 2>&1 && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "ramp needs these Debian packages:$missing" >&2
    echo "install them with:  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
