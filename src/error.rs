//! The crate's one error type. Every variant carries the names a user needs to find the problem:
//! the op, the tensor, the file or the limit involved.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by tessera.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched (or none exists).
    #[error(
        "no GPU adapter found{detail}. Install a GPU driver (Vulkan, Metal or DX12); on Linux without \
         a GPU, install Mesa's lavapipe CPU adapter (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`)"
    )]
    NoAdapter {
        /// What was asked for, e.g. ` matching TESSERA_ADAPTER="nvidia"`.
        detail: String,
    },

    /// The browser offers no WebGPU adapter (WebGPU missing, disabled, or the GPU blocklisted).
    #[error(
        "this browser offers no WebGPU adapter{detail}. Use a browser with WebGPU (Chrome or Edge 113+, \
         Safari 26+, Firefox with WebGPU enabled) with hardware acceleration turned on, on a page served \
         over https or localhost"
    )]
    NoWebGpu {
        /// What the browser said, if anything.
        detail: String,
    },

    /// The adapter refused to create a device.
    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// What the driver said.
        reason: String,
    },

    /// A tensor's shape does not fit what an op needs.
    #[error("op `{op}`: tensor `{tensor}` has shape {actual}, expected {expected}")]
    Shape {
        /// The op (node name).
        op: String,
        /// The tensor.
        tensor: String,
        /// What the op needs.
        expected: String,
        /// What it got.
        actual: String,
    },

    /// A tensor's dtype is not supported by the op.
    #[error("op `{op}`: tensor `{tensor}` has dtype {dtype}, supported: {supported}")]
    UnsupportedDtype {
        /// The op (node name).
        op: String,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
        /// What the op accepts.
        supported: String,
    },

    /// An op parameter is invalid (zero heads, head dim over the maximum, ...).
    #[error("op `{op}`: {problem}")]
    InvalidOp {
        /// The op (node name).
        op: String,
        /// What is wrong.
        problem: String,
    },

    /// The graph's structure is invalid: a cycle, a dangling tensor, a tensor written twice.
    #[error("invalid graph: {0}")]
    InvalidGraph(String),

    /// A buffer or dispatch would exceed a device limit.
    #[error("op `{op}`: tensor `{tensor}` needs {required}, over the device limit {limit} = {max}")]
    LimitExceeded {
        /// The op (node name), or `arena`.
        op: String,
        /// The tensor (or buffer) concerned.
        tensor: String,
        /// Which limit (`max_storage_buffer_binding_size`, ...).
        limit: &'static str,
        /// What was needed.
        required: u64,
        /// What the device allows.
        max: u64,
    },

    /// GPU memory would exceed the budget (`GpuOptions::memory_budget`, `TESSERA_MEMORY_BUDGET`).
    #[error(
        "{what} needs {} of GPU memory, but {} of the {} budget are in use; use a smaller batch, \
         free other models, or raise the budget (TESSERA_MEMORY_BUDGET)",
        mib(*required), mib(*in_use), mib(*budget)
    )]
    OutOfMemory {
        /// What was being allocated (model, tensor, activations of a batch).
        what: String,
        /// Bytes it needs.
        required: u64,
        /// Bytes the engine already holds on this device.
        in_use: u64,
        /// The budget.
        budget: u64,
    },

    /// A weight is missing or has the wrong size.
    #[error("weight `{name}`: {problem}")]
    Weight {
        /// Weight (tensor) name.
        name: String,
        /// What is wrong.
        problem: String,
    },

    /// An input given to `run` is missing or has the wrong size.
    #[error("input `{name}`: {problem}")]
    Input {
        /// Input name.
        name: String,
        /// What is wrong.
        problem: String,
    },

    /// A model file (config, weights, preprocessor config) is unreadable, malformed or unsupported.
    #[error("{file}: {problem}")]
    Model {
        /// The file (or checkpoint) concerned.
        file: String,
        /// What is wrong.
        problem: String,
    },

    /// An image cannot be decoded or is unusable.
    #[error("{file}: {problem}")]
    Image {
        /// The image file.
        file: String,
        /// What is wrong.
        problem: String,
    },

    /// The GPU device was lost (driver reset, device removed, or destroyed). Everything created
    /// on it is unusable; a new `Gpu` and a reload of the model recover.
    #[error("the GPU device was lost ({reason}); open the GPU again (Gpu::new, or Tessera.create() in the browser) and load the model again")]
    DeviceLost {
        /// What the driver or browser said.
        reason: String,
    },

    /// The GPU reported an error (validation, out of memory, device lost).
    #[error("GPU error{context}: {message}")]
    Gpu {
        /// Where it happened, e.g. ` while compiling pipeline matmul`.
        context: String,
        /// The driver's or wgpu's message.
        message: String,
    },
}

impl Error {
    pub(crate) fn model(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Model { file: file.into(), problem: problem.into() }
    }

    pub(crate) fn image(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Image { file: file.into(), problem: problem.into() }
    }

    pub(crate) fn gpu(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let context = context.into();
        Error::Gpu {
            context: if context.is_empty() { context } else { format!(" {context}") },
            message: message.to_string(),
        }
    }

    /// A stable, machine-readable name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoAdapter { .. } => "no_adapter",
            Error::NoWebGpu { .. } => "no_webgpu",
            Error::RequestDevice { .. } => "request_device",
            Error::Shape { .. } => "shape",
            Error::UnsupportedDtype { .. } => "unsupported_dtype",
            Error::InvalidOp { .. } => "invalid_op",
            Error::InvalidGraph(_) => "invalid_graph",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::OutOfMemory { .. } => "out_of_memory",
            Error::Weight { .. } => "weight",
            Error::Input { .. } => "input",
            Error::Model { .. } => "model",
            Error::Image { .. } => "image",
            Error::DeviceLost { .. } => "device_lost",
            Error::Gpu { .. } => "gpu",
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}
