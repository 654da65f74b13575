//! Data parallelism across processes (`mpirun -np N gpt train CONFIG`): every rank holds the
//! whole model, takes its own rows of every global batch, and the gradients of all ranks are
//! summed once per step; then every rank takes the same optimizer step. Rank 0 alone evaluates,
//! samples and writes checkpoints.
//!
//! The sum is done in a fixed order, so a run is reproducible and independent of how MPI
//! chooses to reduce: each rank owns a 1/N slice of the flat gradient buffer, receives that
//! slice from every rank (one all-to-all), adds them up in rank order 0, 1, ..., N-1, and the
//! summed slices are gathered back to everyone (one all-gather). As many bytes move as in a ring
//! all-reduce. The MPI side is behind the cargo feature `mpi`; without it, or when the process was
//! not started by an MPI launcher, the run is one process ([`SingleProcess`]).

use crate::Result;

/// How the processes of a run work together.
pub trait Collective {
    /// This process's rank, 0 ..= size - 1; rank 0 leads (evaluates, samples, checkpoints).
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Sums the concatenation of `parts` element by element over every rank, adding the ranks'
    /// values in rank order (starting from 0.0), and leaves the sum in `parts` on every rank.
    /// Every rank passes parts of the same lengths.
    fn sum_in_rank_order(&self, parts: &mut [&mut [f32]]) -> Result<()>;
    /// Rank 0's `bytes` to every rank (every rank passes a buffer of the same length).
    fn broadcast(&self, bytes: &mut [u8]);
    /// Waits until every rank has come here.
    fn barrier(&self);
    /// Ends every rank of the run at once, after `message` was said (a rank that fails must not
    /// leave the others waiting in a collective).
    fn abort(&self, message: &str) -> !;
}

/// A run of one process.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_in_rank_order(&self, _: &mut [&mut [f32]]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: &mut [u8]) {}
    fn barrier(&self) {}
    fn abort(&self, message: &str) -> ! {
        eprintln!("{message}");
        std::process::exit(1)
    }
}

/// The rows `[lo, hi)` of a batch of `b` sequences that rank `rank` of `size` takes: contiguous
/// blocks, in rank order, as even as the division allows.
pub fn rows(b: usize, rank: usize, size: usize) -> (usize, usize) {
    (rank * b / size, (rank + 1) * b / size)
}

/// [`Collective::sum_in_rank_order`] given the exchange, kept apart from MPI so that its
/// arithmetic is tested without it: `parts` are packed into one buffer of N equal slices (slice
/// j goes to rank j), `exchange(send, recv)` is the all-to-all (`recv` gets this rank's slice of
/// every rank, in rank order), the slices are summed in that order, and `gather(mine, out)` is
/// the all-gather of every rank's summed slice.
pub fn sum_parts_in_rank_order(
    parts: &mut [&mut [f32]],
    size: usize,
    exchange: impl FnOnce(&[f32], &mut [f32]),
    gather: impl FnOnce(&[f32], &mut [f32]),
) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let chunk = total.div_ceil(size);
    let mut send = Vec::with_capacity(chunk * size);
    for p in parts.iter() {
        send.extend_from_slice(p);
    }
    send.resize(chunk * size, 0.0);
    let mut recv = vec![0f32; send.len()];
    exchange(&send, &mut recv);
    let mut mine = vec![0f32; chunk];
    for from in recv.chunks_exact(chunk.max(1)) {
        for (m, x) in mine.iter_mut().zip(from) {
            *m += x;
        }
    }
    gather(&mine, &mut send);
    let mut at = 0;
    for p in parts.iter_mut() {
        p.copy_from_slice(&send[at..at + p.len()]);
        at += p.len();
    }
}

/// The processes of an MPI launch (`mpirun`, `srun`, ...), over the world communicator.
#[cfg(feature = "mpi")]
pub struct Mpi {
    world: mpi::topology::SimpleCommunicator,
    // Finalizes MPI when dropped, after the communicator.
    _universe: mpi::environment::Universe,
}

#[cfg(feature = "mpi")]
impl Mpi {
    /// Joins the MPI launch this process was started by, or None when it was not started by
    /// one (a plain `gpt train`: then the run is one process, and MPI is not initialized).
    pub fn join() -> Option<Mpi> {
        use mpi::traits::*;
        let launched = [
            "OMPI_COMM_WORLD_SIZE",
            "PMI_SIZE",
            "PMIX_RANK",
            "MPI_LOCALNRANKS",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if !launched {
            return None;
        }
        // Only the main thread calls MPI; the kernels' threads never do.
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        let _ = world.size();
        Some(Mpi {
            world,
            _universe: universe,
        })
    }
}

#[cfg(feature = "mpi")]
impl Collective for Mpi {
    fn rank(&self) -> usize {
        use mpi::traits::*;
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        use mpi::traits::*;
        self.world.size() as usize
    }

    fn sum_in_rank_order(&self, parts: &mut [&mut [f32]]) -> Result<()> {
        use mpi::traits::*;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if i32::try_from(total.div_ceil(self.size()) * self.size()).is_err() {
            return Err(crate::Error::Invalid(format!(
                "{total} gradient values are more than one MPI message can carry (2^31 - 1)"
            )));
        }
        sum_parts_in_rank_order(
            parts,
            self.size(),
            |send, recv| self.world.all_to_all_into(send, recv),
            |mine, out| self.world.all_gather_into(mine, out),
        );
        Ok(())
    }

    fn broadcast(&self, bytes: &mut [u8]) {
        use mpi::traits::*;
        // One message carries at most 2^31 - 1 elements.
        for chunk in bytes.chunks_mut(1 << 30) {
            self.world.process_at_rank(0).broadcast_into(chunk);
        }
    }

    fn barrier(&self) {
        use mpi::traits::*;
        self.world.barrier()
    }

    fn abort(&self, message: &str) -> ! {
        use mpi::traits::*;
        eprintln!("rank {}: {message}", self.rank());
        self.world.abort(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three ranks simulated in one process: the exchange of the all-to-all and the all-gather
    /// done by hand.
    #[test]
    fn every_rank_gets_the_sum_in_rank_order() {
        let size = 3;
        // Rank r holds a gradient of 7 values and a loss; the all-to-all and the all-gather are
        // done by hand, each rank's summed slice computed before any is gathered.
        let values: Vec<Vec<f32>> = (0..size)
            .map(|r| (0..8).map(|i| (r * 10 + i) as f32 * 0.1 + 1e-8).collect())
            .collect();
        let chunk = 8usize.div_ceil(size);
        let padded = |r: usize| {
            let mut v = values[r].clone();
            v.resize(chunk * size, 0.0);
            v
        };
        let mut summed = vec![Vec::new(); size];
        for (rank, sum) in summed.iter_mut().enumerate() {
            let mut v = values[rank].clone();
            let (grad, loss) = v.split_at_mut(7);
            sum_parts_in_rank_order(
                &mut [grad, loss],
                size,
                |_, recv| {
                    for from in 0..size {
                        recv[from * chunk..(from + 1) * chunk]
                            .copy_from_slice(&padded(from)[rank * chunk..(rank + 1) * chunk]);
                    }
                },
                |mine, _| *sum = mine.to_vec(),
            );
        }
        let everyone: Vec<f32> = summed.concat();
        for i in 0..8 {
            let want = 0.0 + values[0][i] + values[1][i] + values[2][i];
            assert_eq!(everyone[i].to_bits(), want.to_bits(), "value {i}");
        }
    }

    #[test]
    fn rows_cover_the_batch_in_rank_order() {
        for (b, n) in [(12, 2), (7, 3), (4, 4), (5, 1)] {
            let mut end = 0;
            for r in 0..n {
                let (lo, hi) = rows(b, r, n);
                assert_eq!(lo, end);
                assert!(hi > lo);
                end = hi;
            }
            assert_eq!(end, b);
        }
    }
}
