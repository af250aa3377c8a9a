#!/usr/bin/env bash
# The GPU checks in one go, for a CUDA machine that has torch, lightning, pytest, tensorboard and matplotlib
# but neither hydra-core, omegaconf and antlr4 nor a package registry. Nothing is installed there.
#
#   bash scripts/gpu_check.sh --prepare    # here, once: copy those three pure-Python packages from this
#                                          # machine's install into .gpu_site/ (git-ignored; carry it along)
#   OUT=results bash scripts/gpu_check.sh  # there: at most BUDGET seconds (540), results in $OUT (./gpu_check)
#
# Settings from the environment: PYTHON (python3), OUT, BUDGET, GPU_SITE (.gpu_site), RUNS (where the run folders are made; a new
# temporary folder). Every step has its own time limit and is judged by its own exit code; a failed step
# does not stop the others, a step that could pass the budget is skipped, and a step that needs an earlier
# one that did not pass is skipped. It leaves five files in $OUT:
#   steps.txt       each step: ok, failed (exit code) or skipped (why), with its seconds
#   gpu_check.log   every step's command and output, one after the other
#   pytest.xml      the pytest run (JUnit XML)
#   summaries.json  each run's result, and the largest weight and loss differences of each GPU run
#                   against the same run on the CPU (or, for resume, against the uninterrupted GPU run)
#   runs.tar.gz     the run folders: summary.json, TensorBoard events, config, checkpoints, figures
# Exit status: 0 when no step failed (skipped ones included), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
SITE=${GPU_SITE:-$ROOT/.gpu_site}
PACKAGES=(hydra-core omegaconf antlr4-python3-runtime)  # what the GPU machine lacks; all pure Python

if [ "${1:-}" = "--prepare" ]; then
    rm -rf "$SITE"
    "$PY" - "$SITE" "${PACKAGES[@]}" <<'EOF' || exit 1
"""Copy the installed files of each named distribution (its modules and its .dist-info) into the target."""
import shutil
import sys
from importlib.metadata import distribution
from pathlib import Path

target = Path(sys.argv[1])
for name in sys.argv[2:]:
    dist = distribution(name)
    root = Path(dist.locate_file("")).resolve()
    for file in dist.files:
        source = Path(dist.locate_file(file)).resolve()
        if root in source.parents and "__pycache__" not in file.parts and source.is_file():  # not ../../bin
            copy = target / source.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
    print(f"{name} {dist.version}")
EOF
    echo "prepared $SITE ($(du -sh "$SITE" | cut -f1)); carry .gpu_site along with the working tree"
    exit 0
fi

OUT=${OUT:-./gpu_check}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
RUNS=${RUNS:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_runs.XXXXXX")}
mkdir -p "$RUNS"
STEPS=$OUT/steps.txt LOG=$OUT/gpu_check.log STEP_OUT=$(mktemp)
: > "$STEPS"
: > "$LOG"
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HYDRA_FULL_ERROR=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
QUIET=("~callbacks.progress_bar" "+trainer.enable_progress_bar=false")  # one sgd log is 44 KB of redraws
T0=$SECONDS
failed=0
declare -A result
unset NEEDS EXPECT  # set per step below

record() {  # record NAME STATUS SECONDS [NOTE]
    result[$1]=$2
    printf '%-18s %-8s %4ss  %s\n' "$1" "$2" "$3" "${4:-}" | tee -a "$STEPS"
}

# step NAME LIMIT COMMAND...: run COMMAND under a hard limit of LIMIT seconds, unless the budget cannot take
# it or a step named in NEEDS did not pass. It passes when it exits with EXPECT (0).
step() {
    local name=$1 limit=$2 expect=${EXPECT:-0} needs=${NEEDS:-} start=$SECONDS rc need left
    shift 2
    for need in $needs; do
        if [ "${result[$need]:-}" != ok ]; then
            record "$name" skipped 0 "needs $need (${result[$need]:-not run})"
            return
        fi
    done
    left=$((BUDGET - (SECONDS - T0)))
    if [ "$left" -lt $((limit + 10)) ]; then
        record "$name" skipped 0 "budget: ${left}s left, the step may take $((limit + 10))s"
        return
    fi
    echo "===== $name (limit ${limit}s, at $((SECONDS - T0))s of ${BUDGET}s): $*" >> "$LOG"
    timeout --kill-after=10 "$limit" "$@" > "$STEP_OUT" 2>&1
    rc=$?
    cat "$STEP_OUT" >> "$LOG"
    if [ "$rc" -eq "$expect" ]; then
        record "$name" ok $((SECONDS - start))
    else
        case $rc in 124 | 137) note="timed out after ${limit}s" ;; *) note="exit $rc" ;; esac
        record "$name" failed $((SECONDS - start)) "$note"
        tail -n 25 "$STEP_OUT" | sed 's/^/    | /'
        failed=1
    fi
    echo "----- $name: ${result[$name]}" >> "$LOG"
}

train() {  # train NAME LIMIT OVERRIDES...: the step NAME runs scripts/train.py into the run folder $RUNS/NAME
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PY" scripts/train.py "$@" "${QUIET[@]}" "hydra.run.dir=$RUNS/$name"
}

GPU=(trainer=gpu)
MINIBATCH=(+experiment=minibatch)

# 1. the interpreter and the packages, then the card
NEEDS='' step imports 60 "$PY" -c "import sys, hydra, omegaconf, lightning, pytest, torch, linreg.train
print(sys.executable, sys.version.split()[0], 'torch', torch.__version__, 'lightning', lightning.__version__)
print('hydra', hydra.__version__, 'from', hydra.__file__, '; linreg from', linreg.__file__)"
NEEDS='' step card 60 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv && nvidia-smi -L &&
    "$0" -c "import torch; assert torch.cuda.is_available(), \"torch sees no CUDA GPU\"
print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, torch.cuda.get_device_name(0))
print(\"gpus\", torch.cuda.device_count())"' "$PY"
gpus=$(sed -n 's/^gpus \([0-9][0-9]*\)$/\1/p' "$LOG" | tail -n 1)

# 2. the tests: the GPU ones, and every test of the GPU path (CPU ones included) on a GPU host
NEEDS=imports step pytest 180 "$PY" -m pytest -q -p no:cacheprovider tests -k "gpu or cuda" -rs --durations=10 \
    --junitxml="$OUT/pytest.xml"

# 3. the seed experiments and mini-batches on the GPU, each beside the same run on the CPU
for name in sgd gd minibatch; do
    NEEDS=imports train "${name}_cpu" 60 "+experiment=$name"
    NEEDS="imports card" train "${name}_gpu" 60 "+experiment=$name" "${GPU[@]}"
done

# 3b. one optimizer step per training step (data.steps_per_call=1) against the default chunks: the same numbers
NEEDS="imports card" train minibatch_k1_gpu 60 "+experiment=minibatch" "${GPU[@]}" data.steps_per_call=1

# 4. precision: float64 (beside float64 on the CPU) and bf16 mixed precision
NEEDS=imports train minibatch64_cpu 60 "${MINIBATCH[@]}" trainer.precision=64
NEEDS="imports card" train minibatch64_gpu 60 "${MINIBATCH[@]}" "${GPU[@]}" trainer.precision=64
NEEDS="imports card" train bf16_gpu 60 "${MINIBATCH[@]}" "${GPU[@]}" trainer.precision=bf16-mixed

# 5. DDP over NCCL: one process on one GPU, and two where there are two
NEEDS="imports card" train ddp1_gpu 90 "${MINIBATCH[@]}" trainer=ddp trainer.accelerator=gpu \
    trainer.devices=1
if [ "${gpus:-0}" -ge 2 ]; then
    NEEDS="imports card" train ddp2_gpu 120 "${MINIBATCH[@]}" trainer=ddp trainer.accelerator=gpu \
        trainer.devices=2
else
    record ddp2_gpu skipped 0 "needs 2 GPUs (${gpus:-no} here)"
fi

# 6. a real SIGTERM at step 300 (epoch 9 of 20, mid-epoch), then resume= on the GPU; tests/signals.py sends it.
# Chunks of 4 optimizer steps: a run stops at the end of a chunk, and 300 is one
export PYTHONPATH="$PYTHONPATH:$ROOT/tests"
# (HYDRA_FULL_ERROR=0 there: with 1 the interruption leaves as a traceback and exit 1 instead of its exit 130)
EXPECT=130 NEEDS="imports card" step stop_gpu 60 env HYDRA_FULL_ERROR=0 "$PY" scripts/train.py "${MINIBATCH[@]}" \
    "${GPU[@]}" data.steps_per_call=4 +callbacks.sigterm._target_=signals.SigtermAtStep +callbacks.sigterm.step=300 \
    "${QUIET[@]}" \
    "hydra.run.dir=$RUNS/stop_gpu"
NEEDS=stop_gpu step resume_gpu 60 "$PY" scripts/train.py "resume=$RUNS/stop_gpu" "hydra.run.dir=$RUNS/resumed_gpu"

# 7. the numbers side by side, and the run folders
NEEDS='' step summaries 30 "$PY" - "$RUNS" "$OUT/summaries.json" sgd=sgd_cpu:sgd_gpu gd=gd_cpu:gd_gpu \
    minibatch=minibatch_cpu:minibatch_gpu chunks=minibatch_k1_gpu:minibatch_gpu precision64=minibatch64_cpu:minibatch64_gpu \
    bf16_mixed=minibatch_cpu:bf16_gpu ddp1=minibatch_cpu:ddp1_gpu ddp2=minibatch_cpu:ddp2_gpu \
    resume=minibatch_gpu:resumed_gpu <<'EOF'
"""Each run's summary, and per pair A:B the largest |difference| of the weights (bias included) and of the loss."""
import json
import sys
from pathlib import Path

runs, target, pairs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
keys = ("status", "device", "epochs", "steps", "final_loss", "excess_loss", "weight", "bias", "wall_time_s", "error")
summaries = {}
for path in sorted(runs.glob("*/summary.json")):
    summary = json.loads(path.read_text())
    summaries[path.parent.name] = {k: summary[k] for k in keys if k in summary}


def parameters(summary):
    return list(summary.get("weight") or []) + ([summary["bias"]] if isinstance(summary.get("bias"), float) else
                                                list(summary.get("bias") or []))


compared = {}
for pair in pairs:
    label, runs_ = pair.split("=")
    a, b = runs_.split(":")
    entry = {"a": a, "b": b}
    if a in summaries and b in summaries:
        pa, pb = parameters(summaries[a]), parameters(summaries[b])
        la, lb = summaries[a]["final_loss"], summaries[b]["final_loss"]
        entry.update(
            statuses=[summaries[a]["status"], summaries[b]["status"]],
            steps=[summaries[a]["steps"], summaries[b]["steps"]],
            max_weight_diff=max(abs(x - y) for x, y in zip(pa, pb)) if len(pa) == len(pb) and pa else None,
            loss_diff=abs(la - lb),
            loss_rel_diff=abs(la - lb) / abs(la) if la else None,
        )
    else:
        entry["missing"] = [r for r in (a, b) if r not in summaries]
    compared[label] = entry
    print(f"{label:12} {a} vs {b}: " + ", ".join(f"{k} {v}" for k, v in entry.items() if k not in ("a", "b")))
target.write_text(json.dumps({"pairs": compared, "runs": summaries}, indent=1) + "\n")
EOF
sed -n '/^===== summaries/,/^----- summaries/p' "$LOG" | sed '1d;$d'
NEEDS='' step tarball 60 tar -czf "$OUT/runs.tar.gz" -C "$RUNS" .

# 8. last, trimmed to end well inside the budget: throughput at 10 million samples, the order drawn on the
# CPU (the default) and on the GPU (data.permute_on=device)
BENCH=(scripts/bench.py --device cuda --samples 10000000 --features 1 --batch-sizes 65536,1048576,full
    --repeats 2 --epochs 2 --max-steps 2000 --quick)
NEEDS="imports card" step bench_gpu 150 "$PY" "${BENCH[@]}"
NEEDS="imports card" step bench_gpu_order 120 "$PY" "${BENCH[@]}" --permute-on device --no-analytic

echo "total $((SECONDS - T0))s of a ${BUDGET}s budget; run folders in $RUNS" | tee -a "$STEPS"
echo "results in $OUT: $(cd "$OUT" && echo *)"
rm -f "$STEP_OUT"
exit "$failed"
