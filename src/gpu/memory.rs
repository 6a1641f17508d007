//! Accounting of the GPU memory the engine holds, against a budget.
//!
//! WebGPU (and wgpu) do not say how much memory a device has, so the engine keeps its own ledger:
//! every buffer it creates (weights, activation arenas, uniforms, staging) is reserved here first
//! and released when dropped. A reservation over the budget fails with
//! [`Error::OutOfMemory`] before anything is allocated, instead of the
//! driver failing later or losing the device.

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

    fn reserve(&self, what: &str, bytes: u64) -> Result<()> {
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

/// A buffer whose bytes are counted in the device's ledger while it lives.
pub(crate) struct TrackedBuffer {
    buffer: wgpu::Buffer,
    ledger: Arc<Ledger>,
}

impl TrackedBuffer {
    pub(crate) fn create(device: &wgpu::Device, ledger: &Arc<Ledger>, what: &str, desc: &wgpu::BufferDescriptor) -> Result<Self> {
        ledger.reserve(what, desc.size)?;
        let buffer = device.create_buffer(desc);
        Ok(TrackedBuffer { buffer, ledger: ledger.clone() })
    }
}

impl std::ops::Deref for TrackedBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for TrackedBuffer {
    fn drop(&mut self) {
        // Freed now rather than when the last handle wgpu keeps internally goes.
        self.buffer.destroy();
        self.ledger.in_use.fetch_sub(self.buffer.size(), Ordering::SeqCst);
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
