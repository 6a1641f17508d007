//! Reading a mapped buffer back without blocking a thread: a tiny one-shot future completed by the
//! `map_async` callback. Natively the device is polled to completion first, so the future is ready
//! at once; in the browser the callback fires from the event loop.

use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct OneShot<T>(Arc<Mutex<Slot<T>>>);

impl<T> Future for OneShot<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = crate::lock(&self.0);
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Maps `buffer[0..len]` (a MAP_READ buffer whose copy was already submitted), copies it out as
/// bytes and unmaps it.
pub(crate) async fn read_buffer(gpu: &crate::Gpu, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
    let shared = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    let tx = shared.clone();
    buffer.map_async(wgpu::MapMode::Read, 0..len, move |r| {
        let mut slot = crate::lock(&tx);
        slot.value = Some(r);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    });
    gpu.poll_wait()?;
    OneShot(shared).await.map_err(|e| Error::gpu("while reading results back", e))?;
    let out = {
        let view = buffer.get_mapped_range(0..len).map_err(|e| Error::gpu("while reading results back", e))?;
        view.to_vec()
    };
    buffer.unmap();
    Ok(out)
}
