#!/usr/bin/env bash
# Data-parallel training across processes, on loopback (run by .ci/run):
# 1. `mpirun -np 2 gpt train` (1 thread per rank) on a tiny Llama config gives, over 20 steps, the
#    losses of one process with 2 threads on the same global batch, bit for bit: both split each
#    batch into the same two halves and sum the halves' gradients in the same order.
# 2. Its step-10 checkpoint, resumed by 1 process and by 3 ranks, continues it: 1 process gives the
#    same losses bit for bit; 3 ranks split the batch otherwise (other float sums): within 1e-4.
# 3. A rank killed mid-run ends the whole run (mpirun says which rank), and the last checkpoint
#    still loads; a rank that fails ends the launch with its error.
#
# Usage: scripts/mpi_check.sh GPT   (a gpt built with `--features mpi`; mpirun on the PATH)
set -euo pipefail
gpt=$(realpath "${1:?usage: scripts/mpi_check.sh PATH-TO-GPT-BUILT-WITH-MPI}")
root="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
launcher=""
trap '[ -z "$launcher" ] || kill "$launcher" 2>/dev/null; rm -rf "$work"' EXIT
mpirun=(mpirun --allow-run-as-root --oversubscribe)
# OpenMPI wants an ssh or rsh agent even to start ranks on this machine alone; without one, its
# single-node launcher.
command -v ssh >/dev/null || command -v rsh >/dev/null || mpirun+=(--mca plm isolated)
failed=0
check() { # what, command...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failed=1; fi
}

config() { # name steps
  cat > "$work/$1.toml" <<TOML
[model]
arch = "llama"
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 64
d_ff = 160
block_size = 32
[data]
files = ["$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt"]
tokenizer = "char"
[train]
out_dir = "$work/$1"
batch_size = 8
max_steps = $2
learning_rate = 3e-3
warmup_steps = 5
eval_every = 10
eval_batches = 2
checkpoint_every = 10
keep_checkpoints = 5
TOML
}

same_losses() { # a b tolerance (relative; 0 = bit for bit)
  python3 - "$@" <<'PY'
import json, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
la = json.load(open(a))["train_losses"]
lb = json.load(open(b))["train_losses"]
if [s for s, _ in la] != [s for s, _ in lb]:
    sys.exit(f"steps differ: {len(la)} vs {len(lb)}")
worst = max(abs(x - y) / abs(y) for (_, x), (_, y) in zip(la, lb))
print(f"  {len(la)} steps, last loss {la[-1][1]:.6f} vs {lb[-1][1]:.6f}, worst relative difference {worst:.2e}")
sys.exit(0 if (worst == 0 if tol == 0 else worst <= tol) else 1)
PY
}

run() { # log command...: runs it, showing its log if it fails
  local log=$1; shift
  "$@" >"$log" 2>&1 || { cat "$log"; echo "FAILED: $*"; exit 1; }
}

config single 20
run "$work/single.log" "$gpt" train "$work/single.toml" -t 2
config two 20
run "$work/two.log" "${mpirun[@]}" -np 2 "$gpt" train "$work/two.toml" -t 1
grep -q "2 ranks, 1 threads each" "$work/two.log" || { cat "$work/two.log"; echo "FAILED: not 2 ranks"; exit 1; }
check "2 ranks x 1 thread = 1 process x 2 threads, 20 steps, bit for bit" \
  same_losses "$work/two/latest/train_state.json" "$work/single/latest/train_state.json" 0

# Resume the 2-rank run's step-10 checkpoint with other numbers of ranks.
for n in 1 3; do
  config "resume$n" 20
  mkdir -p "$work/resume$n/checkpoints"
  cp -r "$work/two/checkpoints/step-000010" "$work/resume$n/checkpoints/"
  cp -r "$work/two/data" "$work/resume$n/"
  ln -s checkpoints/step-000010 "$work/resume$n/latest"
  if [ "$n" = 1 ]; then
    run "$work/resume$n.log" "$gpt" train "$work/resume$n.toml" --resume -t 2
    tol=0
  else
    run "$work/resume$n.log" "${mpirun[@]}" -np "$n" "$gpt" train "$work/resume$n.toml" --resume -t 1
    tol=1e-4
  fi
  check "the 2-rank run's step 10 resumed by $n rank(s) continues it (tolerance $tol)" \
    same_losses "$work/resume$n/latest/train_state.json" "$work/two/latest/train_state.json" "$tol"
done

# A rank that dies: kill rank 1 once the first checkpoint is written.
config killed 100000
"${mpirun[@]}" -np 2 "$gpt" train "$work/killed.toml" -t 1 >"$work/killed.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do [ -e "$work/killed/latest" ] && break; sleep 0.1; done
# The ranks (not mpirun itself, whose command line holds the same words).
victim=$(pgrep -f "gpt train $work/killed.toml" | grep -vx "$launcher" | sort -n | tail -1 || true)
[ -n "$victim" ] || { cat "$work/killed.log"; echo "FAILED: no rank to kill"; exit 1; }
kill -9 "$victim"
status=0
wait "$launcher" || status=$?
launcher=""
check "the run ends when a rank dies (mpirun's exit status $status)" test "$status" -ne 0
check "mpirun names the dead rank" grep -m1 "process rank [0-9]* .*exited on signal 9" "$work/killed.log"
loads() { "$gpt" generate "ROMEO:" --model "$1" --max-tokens 5 --temperature 0 >/dev/null 2>&1; }
check "the last checkpoint is intact" loads "$work/killed/latest"
# A rank that fails ends the launch with its error (MPI_Abort), without hanging the others.
config small 5
sed -i 's/^batch_size = 8/batch_size = 1/' "$work/small.toml"
status=0
timeout 60 "${mpirun[@]}" -np 2 "$gpt" train "$work/small.toml" -t 1 >"$work/small.log" 2>&1 || status=$?
check "a failing rank ends the launch (exit status $status, not a hang)" test "$status" -ne 0 -a "$status" -ne 124
check "its error is said" grep -m1 "batch_size is 1 but the run has 2 ranks" "$work/small.log"
[ "$failed" = 0 ] || { tail -n 20 "$work"/*.log; exit 1; }
echo "mpi_check: all passed"
