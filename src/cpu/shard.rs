//! One rank of a CPU backend split over several instances that share no memory but a small
//! exchange buffer: the browser's Web Workers, each with its own wasm instance (wasm threads with
//! a shared heap need the standard library rebuilt with atomics, which stable Rust does not ship).
//!
//! Every rank runs the whole graph. The matrix products are split by output columns: each rank
//! holds only its columns of every matrix weight (so the weights' memory does not grow with the
//! ranks), computes its columns of the product, and the ranks then exchange their columns through
//! the [`Board`] ([`Shard::gather_columns`]) so that each holds the whole output again. Where the
//! heads divide between the ranks, the fused query-key-value product and the attention are split
//! by heads and the QKV columns are not exchanged (each rank's attention reads its own heads);
//! elsewhere the attention is split by query tokens. The MLP's second product is split along its
//! depth, each rank its rows against its columns of the first product's output (never exchanged),
//! and the partial products are summed ([`Shard::all_reduce`]). What is cheap (layer norms,
//! additions, the patch embedding, pooling) runs on every rank alike. The results equal the
//! single-thread ones but for that one sum's rounding (within 1e-5; every rank gets the same).

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The buffer the ranks exchange through: two halves (used alternately, so that one barrier per
/// exchange suffices: no rank writes a half again before every rank has passed the next barrier,
/// which it reaches only after reading that half) of [`Board::capacity`] f32 values each, and a
/// barrier.
pub trait Board: Send + Sync {
    /// f32 values per half.
    fn capacity(&self) -> usize;
    /// Writes `data` at value `at` of half `half`.
    fn write(&self, half: usize, at: usize, data: &[f32]);
    /// Reads `out.len()` values at `at` of half `half`.
    fn read(&self, half: usize, at: usize, out: &mut [f32]);
    /// Returns when every rank has called it (the same number of times), or with an error where a
    /// rank stopped (it died, or the group was aborted).
    fn barrier(&self) -> Result<()>;
}

/// This instance's place in a split backend.
pub struct Shard {
    rank: usize,
    ranks: usize,
    board: Arc<dyn Board>,
    round: AtomicUsize,
    /// Packing buffers: this rank's columns, then another rank's.
    bufs: Mutex<(Vec<f32>, Vec<f32>)>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shard({} of {})", self.rank, self.ranks)
    }
}

/// Rank `rank`'s part `[c0, c1)` of `width` columns split into units of `unit` between `ranks`.
pub fn columns_of(rank: usize, ranks: usize, width: usize, unit: usize) -> (usize, usize) {
    let units = width.div_ceil(unit.max(1));
    let (u0, u1) = (units * rank / ranks, units * (rank + 1) / ranks);
    ((u0 * unit).min(width), (u1 * unit).min(width))
}

impl Shard {
    /// Rank `rank` of `ranks` (2 or more), exchanging through `board`.
    pub fn new(rank: usize, ranks: usize, board: Arc<dyn Board>) -> Result<Shard> {
        if ranks < 2 || rank >= ranks || ranks > super::MAX_THREADS {
            return Err(Error::Input { name: "shard".into(), problem: format!("rank {rank} of {ranks}: need 2 to {} ranks and a rank below them", super::MAX_THREADS) });
        }
        if board.capacity() < ranks {
            return Err(Error::Input { name: "shard".into(), problem: format!("an exchange buffer of {} values is too small for {ranks} ranks", board.capacity()) });
        }
        Ok(Shard { rank, ranks, board, round: AtomicUsize::new(0), bufs: Mutex::new((Vec::new(), Vec::new())) })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// All ranks.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// This rank's columns of `width` split in units of `unit`.
    pub fn columns(&self, width: usize, unit: usize) -> (usize, usize) {
        columns_of(self.rank, self.ranks, width, unit)
    }

    /// `data` holds rows of `width` values of which this rank has written its columns (split in
    /// units of `unit`); fills in every other rank's, from the board. All ranks call it together.
    /// Each rank's columns go through its slot of a half, as many rounds as the largest part
    /// needs.
    pub fn gather_columns(&self, data: &mut [f32], width: usize, unit: usize) -> Result<()> {
        if width == 0 {
            return Ok(());
        }
        let rows = data.len() / width;
        let parts: Vec<(usize, usize)> = (0..self.ranks).map(|r| columns_of(r, self.ranks, width, unit)).collect();
        let largest = parts.iter().map(|(a, b)| (b - a) * rows).max().unwrap_or(0);
        let slot = self.board.capacity() / self.ranks;
        let mut bufs = crate::lock(&self.bufs);
        let (mine, theirs) = &mut *bufs;
        let (c0, c1) = parts[self.rank];
        mine.clear();
        for r in 0..rows {
            mine.extend_from_slice(&data[r * width + c0..r * width + c1]);
        }
        for round in 0..largest.div_ceil(slot) {
            let half = self.round.fetch_add(1, Ordering::Relaxed) % 2;
            let (e0, e1) = (round * slot, ((round + 1) * slot).min(mine.len()));
            if e0 < e1 {
                self.board.write(half, self.rank * slot, &mine[e0..e1]);
            }
            self.board.barrier()?;
            for (q, &(q0, q1)) in parts.iter().enumerate() {
                let w = q1 - q0;
                let (e0, e1) = (round * slot, ((round + 1) * slot).min(w * rows));
                if q == self.rank || e0 >= e1 {
                    continue;
                }
                theirs.resize(e1 - e0, 0.0);
                self.board.read(half, q * slot, theirs);
                // Element e of rank q's part is row e / w, its column e % w.
                let mut e = e0;
                while e < e1 {
                    let (r, c) = (e / w, e % w);
                    let n = (w - c).min(e1 - e);
                    data[r * width + q0 + c..r * width + q0 + c + n].copy_from_slice(&theirs[e - e0..e - e0 + n]);
                    e += n;
                }
            }
        }
        Ok(())
    }

    /// `data` holds this rank's partial sum of a whole output; adds every other rank's, in rank
    /// order (so that every rank gets the same sum, bit for bit). All ranks call it together.
    pub fn all_reduce(&self, data: &mut [f32]) -> Result<()> {
        let slot = self.board.capacity() / self.ranks;
        let mut bufs = crate::lock(&self.bufs);
        let (sum, theirs) = &mut *bufs;
        for round in 0..data.len().div_ceil(slot) {
            let half = self.round.fetch_add(1, Ordering::Relaxed) % 2;
            let (e0, e1) = (round * slot, ((round + 1) * slot).min(data.len()));
            self.board.write(half, self.rank * slot, &data[e0..e1]);
            self.board.barrier()?;
            sum.resize(e1 - e0, 0.0);
            theirs.resize(e1 - e0, 0.0);
            for q in 0..self.ranks {
                let part: &[f32] = if q == self.rank {
                    &data[e0..e1]
                } else {
                    self.board.read(half, q * slot, theirs);
                    theirs
                };
                if q == 0 {
                    sum.copy_from_slice(part);
                } else {
                    sum.iter_mut().zip(part).for_each(|(s, p)| *s += p);
                }
            }
            data[e0..e1].copy_from_slice(sum);
        }
        Ok(())
    }
}

/// A board in this process's memory, for ranks that are threads (tests, and measuring the split
/// natively): `ranks` boards sharing one buffer and barrier, made by [`LocalBoard::group`].
pub struct LocalBoard {
    shared: Arc<LocalShared>,
}

struct LocalShared {
    halves: [Mutex<Vec<f32>>; 2],
    capacity: usize,
    barrier: std::sync::Barrier,
}

impl LocalBoard {
    /// One board per rank over one buffer of `capacity` values per half.
    pub fn group(ranks: usize, capacity: usize) -> Vec<Arc<dyn Board>> {
        let shared = Arc::new(LocalShared {
            halves: [Mutex::new(vec![0.0; capacity]), Mutex::new(vec![0.0; capacity])],
            capacity,
            barrier: std::sync::Barrier::new(ranks),
        });
        (0..ranks).map(|_| Arc::new(LocalBoard { shared: shared.clone() }) as Arc<dyn Board>).collect()
    }
}

impl Board for LocalBoard {
    fn capacity(&self) -> usize {
        self.shared.capacity
    }

    fn write(&self, half: usize, at: usize, data: &[f32]) {
        crate::lock(&self.shared.halves[half])[at..at + data.len()].copy_from_slice(data);
    }

    fn read(&self, half: usize, at: usize, out: &mut [f32]) {
        let n = out.len();
        out.copy_from_slice(&crate::lock(&self.shared.halves[half])[at..at + n]);
    }

    fn barrier(&self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_belongs_to_one_rank() {
        for ranks in 2..6 {
            for width in [1, 15, 16, 17, 192, 384, 1000, 1152] {
                let mut next = 0;
                for r in 0..ranks {
                    let (a, b) = columns_of(r, ranks, width, 16);
                    assert_eq!(a, next, "{ranks} ranks, width {width}");
                    assert!(a <= b && (a % 16 == 0 || a == width));
                    next = b;
                }
                assert_eq!(next, width);
            }
        }
    }

    #[test]
    fn gathering_in_small_rounds_gives_every_rank_the_whole_matrix() {
        // A buffer that holds a few rows at a time, or less than one: several rounds.
        for (ranks, capacity, rows, width, unit) in [(2, 64, 13, 40, 16), (3, 96, 7, 50, 16), (2, 4096, 197, 384, 16), (4, 64, 5, 9, 4), (2, 64, 3, 100, 4)] {
            let boards = LocalBoard::group(ranks, capacity);
            let want: Vec<f32> = (0..rows * width).map(|i| i as f32).collect();
            let got: Vec<Vec<f32>> = std::thread::scope(|s| {
                let handles: Vec<_> = boards
                    .into_iter()
                    .enumerate()
                    .map(|(rank, board)| {
                        let want = &want;
                        s.spawn(move || {
                            let shard = Shard::new(rank, ranks, board).unwrap();
                            let (c0, c1) = shard.columns(width, unit);
                            let mut data = vec![f32::NAN; rows * width];
                            for r in 0..rows {
                                data[r * width + c0..r * width + c1].copy_from_slice(&want[r * width + c0..r * width + c1]);
                            }
                            // Twice: the second exchange reuses the halves.
                            shard.gather_columns(&mut data, width, unit).unwrap();
                            let first = data.clone();
                            shard.gather_columns(&mut data, width, unit).unwrap();
                            assert_eq!(first, data);
                            data
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for g in got {
                assert_eq!(g, want, "{ranks} ranks, {rows}x{width}");
            }
        }
    }
}
