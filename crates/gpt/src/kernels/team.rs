//! The kernels' own worker threads, for the many short parallel loops of inference.
//!
//! Generating one token runs about eight parallel loops per layer (the projections, the MLP's
//! matrices, attention), each a few tens of microseconds of work. Handing each to rayon costs a
//! futex wake-up of a sleeping worker and, worse, the wakee's scheduling delay: with one band per
//! thread the awake thread finishes its half and then waits for the late one. Measured on 2
//! cores, that was about a sixth of generation time.
//!
//! The team keeps its workers briefly awake between loops, spinning for at most [`SPIN`], then
//! polling between `sched_yield`s for [`YIELD`] before they park, so back-to-back loops start at
//! once; and tasks are claimed one at a time from a shared counter, so a worker that the OS has
//! descheduled (a shared machine) simply takes fewer tasks instead of stalling the loop, as
//! statically split OpenMP loops do. Nothing busy-spins for longer than [`SPIN`] after the last
//! loop, and a yielding worker gives way to any other runnable thread.
//!
//! [`parallel_for`] runs on the calling thread plus `rayon::current_num_threads() - 1` team
//! workers, so `ThreadPool::install` and `--threads` set the width as they do for rayon. A call
//! made while the team is busy (from inside a task, or from a second thread) runs on the caller
//! alone.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next loop: longer than most gaps between the loops of
/// one forward pass (a RoPE rotation, a cache append: a few microseconds).
const SPIN: Duration = Duration::from_micros(50);

/// After [`SPIN`], how long it keeps polling while yielding its core to any other thread that
/// wants it (so a shared machine loses nothing), before it parks. Waking a parked worker costs a
/// futex call and the wakee's scheduling delay, measured at 4-11% of prompt time on 2 cores
/// with parking after 100 us.
const YIELD: Duration = Duration::from_millis(2);

/// Tasks per loop are counted in 16 bits of the state word.
const MAX_TASKS: usize = u16::MAX as usize;

/// The loop being run, on the caller's stack while it runs.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Team {
    /// epoch (32 bits) | next task to claim (16) | tasks (16). Tasks are claimed by a CAS on the
    /// whole word, so a claim can only succeed while its loop has unclaimed tasks, which keeps
    /// the loop (and `job`) alive until the claimed task is done.
    state: AtomicU64,
    /// `*const Job` of the current loop.
    job: AtomicPtr<()>,
    /// Tasks of the current loop not yet finished.
    pending: AtomicUsize,
    /// Workers with an id below this join the current loop.
    width: AtomicUsize,
    /// The first panic of a task, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// A caller is running a loop.
    busy: AtomicBool,
    /// Workers parked on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// Workers spawned so far.
    spawned: Mutex<usize>,
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| Team {
        state: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        pending: AtomicUsize::new(0),
        width: AtomicUsize::new(0),
        panic: Mutex::new(None),
        busy: AtomicBool::new(false),
        sleepers: AtomicUsize::new(0),
        lock: Mutex::new(()),
        wake: Condvar::new(),
        spawned: Mutex::new(0),
    })
}

thread_local! {
    /// This thread is running a task of a loop: loops it starts run inline.
    static IN_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The threads a loop started here would run on: the width of the rayon pool this thread is
/// in (`ThreadPool::install`, `--threads`), or 1 inside a task of a loop, whose threads are busy.
pub fn width() -> usize {
    if IN_TASK.with(|t| t.get()) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `f(i)` for every i in 0..tasks, on the calling thread and the team's workers, and
/// returns when all are done. Tasks may run in any order and on any thread; a panic in one is
/// re-raised here after the others have finished.
pub fn parallel_for(tasks: usize, f: impl Fn(usize) + Sync) {
    let width = width();
    let team = team();
    if tasks <= 1
        || width <= 1
        || team
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return (0..tasks).for_each(f);
    }
    // Loops wider than the counter run as several loops.
    for start in (0..tasks).step_by(MAX_TASKS) {
        let n = (tasks - start).min(MAX_TASKS);
        team.run(n, width - 1, &|i| f(start + i));
    }
    team.busy.store(false, Ordering::Release);
}

/// `f(i)` for every i in 0..tasks, as [`parallel_for`], collected in order.
pub fn parallel_map<R: Send>(tasks: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    parallel_for(tasks, |i| {
        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(f(i));
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("parallel_for ran every task")
        })
        .collect()
}

/// Splits `a` into chunks of `ca` elements and `b` into as many chunks of `cb` (the last chunk
/// of each may be shorter; an empty `b` with `cb == 0` gives empty chunks) and runs
/// `f(i, a_i, b_i)` for every chunk i, as [`parallel_for`].
pub fn for_each_chunk_pair_mut<T: Send, U: Send>(
    a: &mut [T],
    ca: usize,
    b: &mut [U],
    cb: usize,
    f: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) {
    assert!(ca > 0, "chunks of 0 elements");
    let n = a.len().div_ceil(ca);
    assert!(
        (cb == 0 && b.is_empty()) || (cb > 0 && b.len().div_ceil(cb) == n),
        "second buffer: {} elements in chunks of {cb} for {n} chunks",
        b.len()
    );
    let (la, lb) = (a.len(), b.len());
    let (pa, pb) = (SendPtr(a.as_mut_ptr()), SendPtr(b.as_mut_ptr()));
    parallel_for(n, |i| {
        let (ra, rb) = (
            i * ca..((i + 1) * ca).min(la),
            (i * cb).min(lb)..((i + 1) * cb).min(lb),
        );
        // SAFETY: the ranges lie inside the buffers, and chunk i of each is handed to task i
        // alone, so no two tasks alias; the buffers outlive the loop.
        let (ai, bi) = unsafe {
            (
                std::slice::from_raw_parts_mut(pa.get().add(ra.start), ra.len()),
                std::slice::from_raw_parts_mut(pb.get().add(rb.start), rb.len()),
            )
        };
        f(i, ai, bi)
    });
}

/// A pointer shared by the tasks of one loop, each touching its own elements.
struct SendPtr<T>(*mut T);
// SAFETY: used only by `for_each_chunk_pair_mut`, whose tasks touch disjoint chunks of elements
// that are themselves `Send`.
unsafe impl<T: Send> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

impl Team {
    fn run(&'static self, tasks: usize, workers: usize, f: &(dyn Fn(usize) + Sync)) {
        self.spawn(workers);
        let job = Job { f };
        self.job
            .store(&job as *const Job as *mut (), Ordering::Relaxed);
        self.width.store(workers, Ordering::Relaxed);
        self.pending.store(tasks, Ordering::Relaxed);
        let epoch = (self.state.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        // SeqCst pairs with the parking worker's check (see `worker`): either it sees this loop,
        // or this thread sees it asleep and wakes it.
        self.state
            .store(epoch << 32 | tasks as u64, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
        while let Some(i) = self.claim() {
            self.execute(f, i);
        }
        // The last tasks may be running on a worker: wait for them, yielding the core to it
        // when it has been preempted.
        let mut spins = 0u32;
        while self.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        let panic = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(payload) = panic {
            self.busy.store(false, Ordering::Release);
            resume_unwind(payload);
        }
    }

    /// Claims the next task of the current loop, if it has one left.
    fn claim(&self) -> Option<usize> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, tasks) = ((s >> 16) & 0xffff, s & 0xffff);
            if next >= tasks {
                return None;
            }
            match self.state.compare_exchange_weak(
                s,
                s + (1 << 16),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next as usize),
                Err(now) => s = now,
            }
        }
    }

    fn has_work(&self) -> bool {
        let s = self.state.load(Ordering::SeqCst);
        (s >> 16) & 0xffff < s & 0xffff
    }

    /// Runs task i of the current loop; a panic is kept for the caller, and the task counts as
    /// done either way, so the loop always ends.
    fn execute(&self, f: &(dyn Fn(usize) + Sync), i: usize) {
        IN_TASK.with(|t| t.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| f(i)));
        IN_TASK.with(|t| t.set(false));
        if let Err(payload) = result {
            let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
        }
        self.pending.fetch_sub(1, Ordering::Release);
    }

    fn spawn(&'static self, workers: usize) {
        let mut spawned = self.spawned.lock().unwrap_or_else(|e| e.into_inner());
        while *spawned < workers {
            let id = *spawned;
            let started = std::thread::Builder::new()
                .name(format!("gpt-kernels-{id}"))
                .spawn(move || self.worker(id));
            if started.is_err() {
                // Without more threads the loop runs on those there are.
                break;
            }
            *spawned += 1;
        }
    }

    fn worker(&self, id: usize) -> ! {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            if id < self.width.load(Ordering::Relaxed) {
                if let Some(i) = self.claim() {
                    // SAFETY: a successful claim means the loop has a task not yet finished,
                    // so its caller is still inside `run` and `job` points at its live `Job`
                    // (published before the state word that the claim read).
                    let job = unsafe { &*(self.job.load(Ordering::Acquire) as *const Job) };
                    self.execute(job.f, i);
                    idle_since = Instant::now();
                    spins = 0;
                    continue;
                }
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let idle = idle_since.elapsed();
            if idle < SPIN {
                continue;
            }
            if idle < SPIN + YIELD {
                std::thread::yield_now();
                continue;
            }
            let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            if !self.has_work() {
                drop(self.wake.wait(guard).unwrap_or_else(|e| e.into_inner()));
            } else {
                drop(guard);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            idle_since = Instant::now();
            spins = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            for tasks in [0, 1, 2, 7, 100, 70_000] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                parallel_for(tasks, |i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        });
    }

    #[test]
    fn chunks_and_maps_land_in_order() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(
                parallel_map(50, |i| i * i),
                (0..50).map(|i| i * i).collect::<Vec<_>>()
            );
            let (mut a, mut b) = (vec![0usize; 30], vec![0usize; 20]);
            for_each_chunk_pair_mut(&mut a, 3, &mut b, 2, |i, ai, bi| {
                ai.fill(i);
                bi.fill(i + 100);
            });
            assert_eq!(a, (0..30).map(|j| j / 3).collect::<Vec<_>>());
            assert_eq!(b, (0..20).map(|j| j / 2 + 100).collect::<Vec<_>>());
            let mut none: [u8; 0] = [];
            for_each_chunk_pair_mut(&mut a, 7, &mut none, 0, |i, ai, _| ai.fill(i));
            assert_eq!(a, (0..30).map(|j| j / 7).collect::<Vec<_>>());
        });
    }

    #[test]
    fn nested_loops_run_inline() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let total = AtomicUsize::new(0);
        pool.install(|| {
            parallel_for(8, |_| {
                parallel_for(8, |_| {
                    total.fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_team_keeps_working() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let r = catch_unwind(|| parallel_for(16, |i| assert!(i != 11, "task 11")));
            assert!(r.is_err());
            let done = AtomicUsize::new(0);
            parallel_for(16, |_| {
                done.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(done.load(Ordering::Relaxed), 16);
        });
    }
}
