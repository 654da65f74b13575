#!/usr/bin/env bash
# Data-parallel training speed on this machine, in one run: gpt-rs as 1 process x 1 thread,
# 1 process x 2 threads and 2 MPI ranks x 1 thread (`mpirun -np 2`), against PyTorch as 1 process
# x 1 and x 2 threads and DistributedDataParallel over gloo with 2 ranks x 1 thread
# (`torchrun --nproc_per_node 2`), on nanoGPT's CPU configuration (configs/shakespeare-char.toml:
# 4 layers, C = 128, T = 64, global batch 12). gpt-rs is built with `--features mpi` (OpenMPI and
# libclang from Debian); PyTorch is installed with pip in bench/.venv-torch. Never in CI.
#
# Usage: bench/train_ddp.sh [STEPS]     (default 300)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
steps="${1:-300}"
venv="$here/.venv-torch"
corpus="$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt"
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli --features mpi
gpt="$root/target/release/gpt"
mpirun=(mpirun --allow-run-as-root --oversubscribe)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e "s#^files = .*#files = [\"$corpus\"]#" -e "s#^out_dir = .*#out_dir = \"$work/out\"#" \
    -e "s#^max_steps = .*#max_steps = $steps#" -e 's#^eval_every = .*#eval_every = 0#' \
    -e 's#^sample_every = .*#sample_every = 0#' -e 's#^checkpoint_every = .*#checkpoint_every = 0#' \
    "$root/configs/shakespeare-char.toml" > "$work/bench.toml"
sed -e "s#^max_steps = .*#max_steps = 1#" "$work/bench.toml" > "$work/prep.toml"
"$gpt" train "$work/prep.toml" > /dev/null 2>&1 # tokenize once, untimed

ours() { # label command...
  local label=$1; shift
  rm -rf "$work/out/checkpoints" "$work/out/latest"
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'| gpt-rs | $label | {$steps * 12 * 64 / ($t1 - $t0):,.0f} |')"
}
theirs() { # label command...
  local label=$1; shift
  "$@" > "$work/log" 2>"$work/err" || { cat "$work/err"; exit 1; }
  python3 -c "import json; r = json.loads(open('$work/log').read().splitlines()[-1]); print(f\"| PyTorch {r['torch']} | $label | {r['tokens_per_s']:,.0f} |\")"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| engine | processes x threads | tokens/s |"
echo "|---|---|---|"
ours "1 x 1" "$gpt" train "$work/bench.toml" --force -t 1
ours "1 x 2" "$gpt" train "$work/bench.toml" --force -t 2
ours "2 x 1 (mpirun)" "${mpirun[@]}" -np 2 "$gpt" train "$work/bench.toml" --force -t 1
OMP_NUM_THREADS=1 theirs "1 x 1" "$venv/bin/python" "$here/nanogpt_cpu.py" "$corpus" --steps "$steps" --threads 1
OMP_NUM_THREADS=2 theirs "1 x 2" "$venv/bin/python" "$here/nanogpt_cpu.py" "$corpus" --steps "$steps" --threads 2
OMP_NUM_THREADS=1 theirs "2 x 1 (torchrun, gloo)" "$venv/bin/torchrun" --nproc_per_node 2 "$here/nanogpt_cpu.py" "$corpus" --steps "$steps" --threads 1
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
