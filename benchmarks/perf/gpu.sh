#!/usr/bin/env bash
# GPU speed check (needs one CUDA GPU; never run on the CPU-only development machine).
#
# Paper U-Net (CIFAR-10 DDPM++ scale, 3x32x32), training batch 128, bf16 autocast and
# channels-last as in benchmarks.training.loop: training-step time, peak memory
# (torch.cuda.max_memory_allocated) and host-device synchronisations per step of fm, lmd, emd and
# meanflow, without and with torch.compile (train.compile; compile time in the compile_s
# column); sampling throughput of the flow map at 1 and 8 NFE against the fm velocity's
# Euler, Heun and dopri5. Writes results/perf/gpu/perf.csv and perf.md.
#
#   bash benchmarks/perf/gpu.sh                  # the preset
#   bash benchmarks/perf/gpu.sh --compile off    # any benchmarks.perf flag overrides it
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "error: no CUDA GPU")'
exec "$PY" -m benchmarks.perf --preset gpu "$@"
