//! Tensor descriptions shared by every layer: ids, element types, kinds and shapes. The graph IR
//! (`graph::ir`) builds on them; the ops check them; the backends size buffers from them.

/// A tensor of a [`crate::Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub(crate) usize);

impl TensorId {
    /// Position in [`crate::Graph::tensors`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float (storage only, where the adapter has `shader-f16`).
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        })
    }
}

/// A weight-only quantization scheme (see `crate::quant`): what a kernel reading the weight
/// depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantShape {
    /// Bits per value: 8 or 4.
    pub bits: u32,
    /// Values of K per scale.
    pub group: usize,
    /// Scales stored as f16 (where every scale is exactly an f16: 4-bit files), else f32.
    pub f16_scales: bool,
}

/// Where a tensor's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// Written by the caller on every run.
    Input,
    /// Uploaded once, looked up by name in [`crate::Weights`].
    Weight,
    /// Produced by a node; lives in the arena.
    Activation,
}

/// A tensor's description.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Name (weights are looked up by it).
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Input, weight or activation.
    pub kind: TensorKind,
    /// For a weight uploaded quantized (set when a graph is compiled against its weights): the
    /// scheme its kernels read. Arithmetic and the other tensors keep `dtype`.
    pub quant: Option<QuantShape>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes, rounded up to 4 (the granularity of storage bindings and copies), or None
    /// on overflow.
    pub fn bytes(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(self.dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|b| b.checked_next_multiple_of(4))
    }
}


/// `[a, b, c]`, for messages.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}
