//! What compiling and running a graph report, on any backend: outputs read back, how the arena
//! was packed, per-op times.


/// Compile-time choices.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Record GPU timestamps around every op (needs `timestamp-query`).
    pub profile: bool,
}

/// A tensor read back from the device.
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// The graph tensor it holds.
    pub id: crate::TensorId,
    /// The graph tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// How the arena was packed.
#[derive(Clone, Debug)]
pub struct PlanReport {
    /// Arena bytes.
    pub arena: u64,
    /// Bytes without sharing (every input and activation its own range).
    pub naive: u64,
    /// Most bytes live at one step.
    pub peak_live: u64,
    /// Weight bytes bound by the graph.
    pub weights: u64,
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "arena {:.2} MiB (unshared {:.2} MiB, peak live {:.2} MiB), weights {:.2} MiB",
            mib(self.arena),
            mib(self.naive),
            mib(self.peak_live),
            mib(self.weights)
        )
    }
}

/// GPU time of one op.
#[derive(Clone, Debug)]
pub struct OpTiming {
    /// Node name.
    pub name: String,
    /// Op kind.
    pub kind: &'static str,
    /// Output shape.
    pub shape: String,
    /// Milliseconds.
    pub ms: f64,
    /// Floating-point throughput (0 for data movement ops).
    pub gflops: f64,
}

/// Per-op GPU times of one run.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// In schedule order.
    pub ops: Vec<OpTiming>,
}

impl Profile {
    /// Sum of the op times.
    pub fn total_ms(&self) -> f64 {
        self.ops.iter().map(|o| o.ms).sum()
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<28} {:<12} {:<18} {:>10} {:>10}", "op", "kind", "shape", "ms", "GFLOP/s")?;
        for o in &self.ops {
            let g = if o.gflops > 0.0 { format!("{:.1}", o.gflops) } else { "-".into() };
            writeln!(f, "{:<28} {:<12} {:<18} {:>10.4} {:>10}", o.name, o.kind, o.shape, o.ms, g)?;
        }
        write!(f, "{:<28} {:<12} {:<18} {:>10.4}", "total", "", "", self.total_ms())
    }
}

