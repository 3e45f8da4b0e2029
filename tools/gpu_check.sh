#!/usr/bin/env bash
# The GPU checks of torchebm-cuda, as one script for a machine with a CUDA GPU whose python3
# already holds torch and triton (and pytest), e.g. the device machine lent to some sessions.
#
# Here (build the pure-Python wheels the GPU machine installs without network):
#     echo /.whl/ >> .git/info/exclude; rm -rf .whl; uv build --all-packages -o .whl
# There (carry .whl), from the repository root:
#     bash tools/gpu_check.sh            # writes logs to $OUT (or ./gpu-check) as well
#
# Runs: the self-check, every GPU-marked test (fused vs eager, graphs, samplers on CUDA)
# and the Langevin benchmark (ms/step, eager / compiled / CUDA graph / fused / sampler).
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/torchebm-site \
    .whl/torchebm*.whl || exit 1
export PYTHONPATH=/tmp/torchebm-site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -m torchebm.cuda 2>&1 | tee "$out/selfcheck.txt"
status=0
python3 -m pytest -q -p no:cacheprovider -m cuda tests \
    2>&1 | tee "$out/pytest-cuda.txt" || status=1
python3 benchmarks/cuda_langevin.py --device cuda 2>&1 | tee "$out/bench-cuda.md" || status=1
exit $status
