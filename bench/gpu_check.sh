#!/usr/bin/env bash
# Prepare and run bench/gpu_check.py on a machine with an NVIDIA GPU and nothing else
# prepared (no network there): on a machine with one, `--prepare` downloads the wheels
# into bench/gpu-wheels/ (ignored by git); on the GPU machine, the same script installs
# them with no index into a folder of their own and runs the check.
#
#   bench/gpu_check.sh --prepare [--python-version 3.12] [--skip NAME...]  # where PyPI answers
#   bench/gpu_check.sh OUT_DIR [gpu_check.py options]        # on the GPU machine
#
# qiskit-aer-gpu replaces qiskit-aer (the same `qiskit_aer` package): only the GPU build
# is installed there. It needs CUDA 12's libraries (cuBLAS, cuSOLVER, cuSPARSE, cuQuantum:
# over a gigabyte of wheels), which this script expects to find on the machine (a CUDA
# 12 image, or `--with-cuda` to download them too); the check says when Aer cannot load
# them and goes on with the rest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
wheels="$here/gpu-wheels"

if [ "${1:-}" = "--prepare" ]; then
    shift
    pyver=3.12
    with_cuda=0
    skip=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --python-version) pyver="$2"; shift 2 ;;
            --with-cuda) with_cuda=1; shift ;;
            # Distributions the GPU machine already has (numpy, scipy...): not carried.
            --skip) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do skip+=("$1"); shift; done ;;
            *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
        esac
    done
    rm -rf "$wheels" && mkdir -p "$wheels"
    python3 -m pip wheel --no-deps -q -w "$wheels" "$root"
    platform=(--only-binary=:all: --python-version "$pyver" --implementation cp
              --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
              --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    # omnilab's own dependencies and qiskit with the GPU build of Aer.
    deps=$(python3 - "$root/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(" ".join(d.replace(" ", "") for d in project["dependencies"]))
PY
)
    extra=(qiskit qiskit-aer-gpu)
    if [ "$with_cuda" = 0 ]; then
        # Everything but the CUDA libraries, which the GPU machine must provide.
        python3 -m pip download -q "${platform[@]}" -d "$wheels" $deps qiskit
        python3 -m pip download -q "${platform[@]}" --no-deps -d "$wheels" qiskit-aer-gpu
    else
        python3 -m pip download -q "${platform[@]}" -d "$wheels" $deps "${extra[@]}"
    fi
    for name in "${skip[@]}"; do
        normal=$(echo "$name" | tr '[:upper:]-.' '[:lower:]__')
        find "$wheels" -maxdepth 1 -iname "${normal}-*.whl" -delete
    done
    echo "$(ls "$wheels" | wc -l) wheels, $(du -sh "$wheels" | cut -f1) in $wheels"
    exit 0
fi

out="${1:?usage: gpu_check.sh OUT_DIR [options] | --prepare}"
shift
site=/tmp/omnilab-gpu-site
if [ -d "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
        "$wheels"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
cd "$root"
exec python3 bench/gpu_check.py --out "$out" "$@"
