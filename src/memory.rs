//! Accounting of the memory the engine holds on a device, against a budget.
//!
//! WebGPU (and wgpu) do not say how much memory a device has, and a browser tab's wasm heap has a
//! hard ceiling, so the engine keeps its own ledger per device: every buffer it creates (weights,
//! activation arenas, uniforms, staging, scratch) is reserved here first and released when
//! dropped. A reservation over the budget fails with [`Error::OutOfMemory`] before anything is
//! allocated, instead of the driver or the allocator failing later.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) struct Ledger {
    in_use: AtomicU64,
    budget: Option<u64>,
}

impl Ledger {
    pub(crate) fn new(budget: Option<u64>) -> Arc<Ledger> {
        Arc::new(Ledger { in_use: AtomicU64::new(0), budget })
    }

    pub(crate) fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::SeqCst)
    }

    pub(crate) fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Checks that `bytes` more would fit, without reserving them.
    pub(crate) fn check(&self, what: &str, bytes: u64) -> Result<()> {
        let in_use = self.in_use();
        match self.budget {
            Some(budget) if in_use.saturating_add(bytes) > budget => {
                Err(Error::OutOfMemory { what: what.into(), required: bytes, in_use, budget })
            }
            _ => Ok(()),
        }
    }

    /// Gives back `bytes` reserved earlier.
    pub(crate) fn release(&self, bytes: u64) {
        self.in_use.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Reserves `bytes` for `what`, or fails with `OutOfMemory` over the budget.
    pub(crate) fn reserve(&self, what: &str, bytes: u64) -> Result<()> {
        let mut cur = self.in_use();
        loop {
            let next = cur.saturating_add(bytes);
            if let Some(budget) = self.budget {
                if next > budget {
                    return Err(Error::OutOfMemory { what: what.into(), required: bytes, in_use: cur, budget });
                }
            }
            match self.in_use.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Bytes reserved in a ledger while this lives (host memory of the CPU backend).
pub(crate) struct Reservation {
    ledger: Arc<Ledger>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `bytes` for `what`, or fails with `OutOfMemory` over the budget.
    pub(crate) fn new(ledger: &Arc<Ledger>, what: &str, bytes: u64) -> Result<Reservation> {
        ledger.reserve(what, bytes)?;
        Ok(Reservation { ledger: ledger.clone(), bytes })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ledger.release(self.bytes);
    }
}

/// Parses a byte size: `123`, `512MiB`, `512MB`, `2GiB`, `2G`, `1.5GiB` (K/M/G/T are powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let scale = match unit {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = value * scale as f64;
    (value.is_finite() && value >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The budget `TESSERA_MEMORY_BUDGET` sets (`4GiB`, `512MiB`, bytes), if set.
pub fn budget_from_env() -> Result<Option<u64>> {
    match std::env::var("TESSERA_MEMORY_BUDGET").ok().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_size(&v).map(Some).ok_or_else(|| Error::Input {
            name: "TESSERA_MEMORY_BUDGET".into(),
            problem: format!("`{v}` is not a size (examples: 512MiB, 4GiB, 1073741824)"),
        }),
    }
}

/// Memory the OS says is available (Linux: `MemAvailable`), for CPU adapters whose "GPU memory"
/// is system memory.
pub(crate) fn system_available() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("512 MB"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn ledger_refuses_over_budget_and_counts_exactly() {
        let l = Ledger::new(Some(100));
        l.reserve("a", 60).unwrap();
        let e = l.reserve("b", 50).unwrap_err();
        assert_eq!(e.kind(), "out_of_memory");
        assert!(e.to_string().starts_with("b needs"), "{e}");
        assert_eq!(l.in_use(), 60);
        l.reserve("c", 40).unwrap();
        assert_eq!(l.in_use(), 100);
    }
}
