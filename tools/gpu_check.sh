#!/usr/bin/env bash
# The GPU checks of torchebm-cuda, as one script for a machine with a CUDA GPU whose python3
# already holds torch and triton (and pytest), e.g. the device machine lent to some sessions.
#
# Here (build the pure-Python wheels the GPU machine installs without network):
#     echo /.whl/ >> .git/info/exclude; rm -rf .whl; uv build --all-packages -o .whl
# There (carry .whl), from the repository root:
#     bash tools/gpu_check.sh            # writes logs to $OUT (or ./gpu-check) as well
#
# Runs: the self-check, every GPU-marked test (fused vs eager, graphs, samplers on CUDA),
# the Langevin benchmark (ms/step, eager / compiled / CUDA graph / fused / sampler) and every
# documentation example, which picks the GPU when there is one (docs/, examples/, and the
# seed-documentation corpus too when $TORCHEBM_SEED_DOCS names it: copy it into a folder that
# .git/info/exclude ignores and carry that folder). About 3 minutes on an H200.
# The suite's other rows on the GPU (not part of this check):
#     python3 benchmarks/run.py --device cuda --quick
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
MPLBACKEND=Agg TORCHEBM_SMOKE=1 python3 tools/run_doc_examples.py --jobs 8 \
    2>&1 | tee "$out/examples.txt" || status=1
exit $status
