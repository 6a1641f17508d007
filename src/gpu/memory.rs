//! GPU buffers counted in the device's memory ledger ([`crate::memory::Ledger`]).

use crate::error::Result;
pub(crate) use crate::memory::Ledger;
use std::sync::Arc;

pub use crate::memory::parse_size;
pub(crate) use crate::memory::system_available;

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
        self.ledger.release(self.buffer.size());
    }
}

