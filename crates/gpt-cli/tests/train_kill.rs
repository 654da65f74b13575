//! `kill -9` at random moments of a real `gpt train` with a checkpoint after every step: after
//! every kill `latest` loads, and the run, resumed again and again, ends with exactly the losses
//! of an uninterrupted run (bit for bit).

use gpt::train::checkpoint::{self, TrainState};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const STEPS: usize = 60;

fn config(out: &Path) -> PathBuf {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gpt/tests/fixtures/tinyshakespeare/input.txt");
    std::fs::create_dir_all(out).unwrap();
    let path = out.join("train.toml");
    std::fs::write(
        &path,
        format!(
            "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nblock_size = 32\n\
             [data]\nfiles = [\"{}\"]\ntokenizer = \"char\"\n\
             [train]\nout_dir = \"out\"\nbatch_size = 8\nmax_steps = {STEPS}\nlearning_rate = 3e-3\n\
             warmup_steps = 4\neval_every = 6\neval_batches = 2\ncheckpoint_every = 1\n\
             keep_checkpoints = 2\nseed = 11\n",
            corpus.display()
        ),
    )
    .unwrap();
    path
}

fn final_state(out: &Path) -> TrainState {
    let ck = checkpoint::load_latest(out).unwrap().expect("a checkpoint");
    ck.state
}

fn train(cfg: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["train", cfg.to_str().unwrap(), "--resume", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting gpt train")
}

#[test]
fn kill_9_at_random_moments_never_breaks_latest_and_resume_is_bit_identical() {
    let base = std::env::temp_dir().join(format!("gpt-train-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    // The uninterrupted run, timed: kills land anywhere within it.
    let whole = config(&base.join("whole"));
    let t0 = Instant::now();
    assert!(train(&whole).wait().unwrap().success());
    let run_time = t0.elapsed();
    let want = final_state(&base.join("whole/out"));
    assert_eq!(want.step, STEPS);

    let cfg = config(&base.join("killed"));
    let out = base.join("killed/out");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut kills, mut finished) = (0, false);
    let mut steps_at_kill = Vec::new();
    for _ in 0..40 {
        let mut child = train(&cfg);
        // xorshift: a delay between 3% and 25% of a whole run (each restart repeats the
        // tokenizing and loading, so later ones get further).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let frac = 0.03 + (rng % 1000) as f64 / 1000.0 * 0.22;
        std::thread::sleep(run_time.mul_f64(frac));
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if let Some(ck) = checkpoint::load_latest(&out)
            .unwrap_or_else(|e| panic!("after kill {kills}: latest does not load: {e}"))
        {
            assert!(ck.state.step <= STEPS);
            steps_at_kill.push(ck.state.step);
        }
    }
    if !finished {
        assert!(train(&cfg).wait().unwrap().success());
    }
    eprintln!("run {run_time:?}; {kills} kills, latest at steps {steps_at_kill:?}");
    // The kills landed while training ran, not only before its first checkpoint.
    let distinct: std::collections::BTreeSet<_> = steps_at_kill.iter().collect();
    assert!(
        kills >= 3 && distinct.len() >= 2,
        "{kills} kills at {steps_at_kill:?}"
    );
    let got = final_state(&out);
    let bits = |v: &[(usize, f32)]| v.iter().map(|(s, l)| (*s, l.to_bits())).collect::<Vec<_>>();
    assert_eq!(got.step, STEPS);
    assert_eq!(
        bits(&got.train_losses),
        bits(&want.train_losses),
        "after {kills} kills"
    );
    assert_eq!(bits(&got.val_losses), bits(&want.val_losses));
    // No leftovers of killed writes beyond the newest one's.
    let tmp = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(tmp, 0, "temporary folders left");
    let _ = std::fs::remove_dir_all(&base);
}
