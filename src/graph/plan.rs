//! The memory planner: a pure function from tensor lifetimes and sizes to arena offsets.
//!
//! Greedy by size: the largest tensors are placed first, each at the lowest aligned offset that
//! does not overlap any already-placed tensor whose lifetime overlaps its own. Tensors that are
//! never live at the same time share memory.

/// A tensor's lifetime (inclusive schedule steps) and size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// Step that writes it (0 for inputs).
    pub first: usize,
    /// Last step that reads it (the end of the schedule for outputs).
    pub last: usize,
    /// Bytes.
    pub size: u64,
}

/// Where each tensor goes, and how well that packs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Byte offset of each interval, in input order.
    pub offsets: Vec<u64>,
    /// Arena size in bytes.
    pub arena: u64,
    /// Sum of all (aligned) sizes: the arena without sharing.
    pub naive: u64,
    /// Most bytes live at one step: no plan can be smaller.
    pub peak_live: u64,
}

fn align_up(x: u64, align: u64) -> u64 {
    x.div_ceil(align) * align
}

fn overlaps(a: &Interval, b: &Interval) -> bool {
    a.first <= b.last && b.first <= a.last
}

/// Assigns offsets (multiples of `align`, which must be non-zero) to the intervals.
pub fn plan_memory(items: &[Interval], align: u64) -> MemoryPlan {
    let align = align.max(1);
    let sizes: Vec<u64> = items.iter().map(|i| align_up(i.size.max(1), align)).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(items[a].first.cmp(&items[b].first)).then(a.cmp(&b)));

    let mut offsets = vec![0u64; items.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut arena = 0u64;
    for &i in &order {
        // Occupied ranges among lifetime-overlapping tensors, sorted by offset.
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| overlaps(&items[i], &items[j]))
            .map(|&j| (offsets[j], offsets[j] + sizes[j]))
            .collect();
        busy.sort_unstable();
        let mut at = 0u64;
        for (start, end) in busy {
            if at + sizes[i] <= start {
                break;
            }
            at = at.max(end);
        }
        offsets[i] = at;
        arena = arena.max(at + sizes[i]);
        placed.push(i);
    }

    let steps = items.iter().map(|i| i.last + 1).max().unwrap_or(0);
    let mut live = vec![0u64; steps];
    for (i, it) in items.iter().enumerate() {
        for l in &mut live[it.first..=it.last] {
            *l += sizes[i];
        }
    }
    MemoryPlan {
        offsets,
        arena,
        naive: sizes.iter().sum(),
        peak_live: live.into_iter().max().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_no_conflicts(items: &[Interval], plan: &MemoryPlan, align: u64) {
        for (i, a) in items.iter().enumerate() {
            assert_eq!(plan.offsets[i] % align, 0);
            assert!(plan.offsets[i] + a.size <= plan.arena);
            for (j, b) in items.iter().enumerate().skip(i + 1) {
                if overlaps(a, b) {
                    let (oa, ob) = (plan.offsets[i], plan.offsets[j]);
                    assert!(oa + a.size <= ob || ob + b.size <= oa, "tensors {i} and {j} share memory while both live");
                }
            }
        }
    }

    #[test]
    fn chain_reuses_memory() {
        // A chain: each tensor is read only by the next step.
        let items: Vec<Interval> = (0..10).map(|s| Interval { first: s, last: s + 1, size: 1000 }).collect();
        let plan = plan_memory(&items, 256);
        check_no_conflicts(&items, &plan, 256);
        assert_eq!(plan.naive, 10 * 1024);
        assert_eq!(plan.arena, 2 * 1024);
        assert_eq!(plan.peak_live, 2 * 1024);
    }

    #[test]
    fn overlapping_lifetimes_never_share() {
        let items = vec![
            Interval { first: 0, last: 5, size: 100 },
            Interval { first: 1, last: 2, size: 300 },
            Interval { first: 3, last: 4, size: 200 },
            Interval { first: 2, last: 3, size: 50 },
            Interval { first: 5, last: 6, size: 400 },
        ];
        let plan = plan_memory(&items, 16);
        check_no_conflicts(&items, &plan, 16);
        assert!(plan.arena >= plan.peak_live);
        assert!(plan.arena < plan.naive);
    }

    #[test]
    fn pseudo_random_lifetimes_are_consistent() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..50 {
            let items: Vec<Interval> = (0..30)
                .map(|_| {
                    let first = next() % 40;
                    Interval { first, last: first + next() % 8, size: 1 + (next() % 5000) as u64 }
                })
                .collect();
            let plan = plan_memory(&items, 256);
            check_no_conflicts(&items, &plan, 256);
            assert!(plan.arena >= plan.peak_live && plan.arena <= plan.naive);
        }
    }

    #[test]
    fn empty() {
        let plan = plan_memory(&[], 256);
        assert_eq!((plan.arena, plan.naive, plan.peak_live), (0, 0, 0));
    }
}
