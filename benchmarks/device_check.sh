#!/usr/bin/env bash
# Everything the "fast on GPUs" issue measures, on one CUDA device in one go (under 8 minutes on
# an H200): the gpu-marked tests, events/s and MFU of the training step (fp32 and bf16, per-GPU
# batch 1,024 and 4,096), the augmentations' share of the step, a seed-code-style loop against
# ours, and a 1-GPU Ray Train run (nccl) through `dclr pretrain`. benchmarks/device_check.py
# does the work; its docstring describes each section.
#
# Usage:
#   benchmarks/device_check.sh [--out device_check.json] [--skip SECTION]... [--seconds S]
#                              [--peak-tflops bf16=989.4]...
#   benchmarks/device_check.sh --dry-run --out /tmp/dc.json    # CPU, tiny sizes, ~1-2 min (CI)
#
# Sections: gpu_tests flops train_step augment_share seed_vs_ours ray_train.
# Writes one JSON report (--out, rewritten atomically after each section) and prints a table;
# exits 1 if any section failed (the others still run), 2 on a usage error (e.g. no CUDA device
# without --dry-run).
#
# Environment: PYTHON, the interpreter (default: this repository's .venv/bin/python); the
# report path is relative to the current directory, the tests and `dclr` run from the
# repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$here/../.venv/bin/python}"
export DCLR_PROGRESS="${DCLR_PROGRESS:-0}"
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
exec "$PYTHON" "$here/device_check.py" "$@"
