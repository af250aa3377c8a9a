#!/usr/bin/env bash
# The GPU checks, in one go, on a machine with a CUDA GPU (about 8 minutes at most):
#   bash scripts/gpu_check.sh            # results in ./gpu_check
#   OUT=/some/folder bash scripts/gpu_check.sh
# Every step has a hard time limit and its own log in the output folder; a failed step does not stop the
# others. steps.txt lists each step's exit status and seconds; the script exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
: > "$OUT/steps.txt"
failed=0

step() {  # step NAME SECONDS COMMAND...: run with a hard limit, log to $OUT/NAME.log, show its tail
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "   (timed out after ${limit}s)" >> "$OUT/$name.log"
    echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$OUT/steps.txt"
    tail -n 12 "$OUT/$name.log" | sed 's/^/   /'
    [ "$rc" -eq 0 ] || failed=1
}

# 1. the project and its test tools (installed only where missing; the GPU build of torch must already be there)
if ! python -c "import linreg, lightning, hydra, pytest, hydra_plugins.hydra_submitit_launcher" 2> /dev/null; then
    step install 150 python -m pip install --quiet -e ".[dev]"
fi

# 2. the card; without a CUDA GPU that torch can use, nothing below means anything: stop here
step card 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nvidia-smi -L;
    python -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda);
assert torch.cuda.is_available(), \"torch sees no CUDA GPU\"; print(torch.cuda.get_device_name(0))"'
if [ "$failed" -ne 0 ]; then
    echo "no usable CUDA GPU: stopping"
    exit 1
fi

# 3. the GPU tests (tests/test_distributed.py: data moved once, the seed's sgd result, mixed precision)
step pytest_gpu 150 python -m pytest -q -p no:cacheprovider tests -k "gpu or cuda" -rs --durations=10 \
    --junitxml="$OUT/pytest_gpu.xml"

# 4. the seed experiment on the GPU, and mini-batches in mixed precision
step train_sgd_gpu 75 python scripts/train.py +experiment=sgd trainer=gpu hydra.run.dir="$OUT/runs/sgd_gpu"
step train_minibatch_bf16 75 python scripts/train.py +experiment=minibatch trainer=gpu \
    trainer.precision=bf16-mixed hydra.run.dir="$OUT/runs/minibatch_bf16"

# 5. DDP over the GPUs, where there are two or more
gpus=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -ge 2 ]; then
    step train_minibatch_ddp 90 python scripts/train.py +experiment=minibatch trainer=ddp trainer.devices=2 \
        hydra.run.dir="$OUT/runs/minibatch_ddp"
fi

# 6. throughput on the GPU: 10 million samples
step bench_cuda 200 python scripts/bench.py --device cuda --samples 10000000 --features 1 \
    --batch-sizes 1024,65536,1048576,full --repeats 3 --epochs 2 --quick

echo "== done: $OUT/steps.txt"
cat "$OUT/steps.txt"
exit "$failed"
