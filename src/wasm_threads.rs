//! The browser side of a CPU backend split between worker threads ([`crate::cpu::shard`]): each
//! worker runs its own wasm instance as one rank, exchanging columns through a
//! `SharedArrayBuffer` the page made for the group, with `Atomics` for the barrier. Its layout:
//! 64 bytes of control words (`[0]` ranks arrived, `[1]` barrier generation, `[2]` abort: set by
//! the page when a worker died, or by a rank that gave up waiting), then the two halves of f32.
//! Also the weights file read by range from the page's one copy of it (a `SharedArrayBuffer` too).

use crate::cpu::shard::{Board, Shard};
use crate::error::{Error, Result};
use js_sys::{Atomics, Float32Array, Int32Array, Uint8Array};
use std::sync::Arc;

const ARRIVED: u32 = 0;
const GENERATION: u32 = 1;
const ABORT: u32 = 2;
/// Bytes of control words before the halves.
pub const CONTROL_BYTES: u32 = 64;
/// Polls of the generation before a rank sleeps in `Atomics.wait` (a few microseconds: the
/// ranks run the same steps and mostly arrive together).
const SPIN: u32 = 4000;
/// A rank that waits this long for the others gives up: the group is taken as dead.
const GIVE_UP_MS: f64 = 60_000.0;

/// The exchange buffer of one rank.
pub struct JsBoard {
    ctl: Int32Array,
    halves: [Float32Array; 2],
    capacity: usize,
    ranks: i32,
}

// SAFETY: wasm32 without the atomics feature runs one thread per instance; these JS handles are
// never reached from another thread (the other ranks are other instances).
unsafe impl Send for JsBoard {}
unsafe impl Sync for JsBoard {}

impl JsBoard {
    /// Over `sab` (a SharedArrayBuffer laid out as the module doc says) for `ranks` ranks.
    pub fn new(sab: &js_sys::SharedArrayBuffer, ranks: usize) -> Result<JsBoard> {
        let bytes = sab.byte_length();
        let bad = |p: String| Error::Input { name: "threads".into(), problem: p };
        if bytes < CONTROL_BYTES + 8 * 64 {
            return Err(bad(format!("an exchange buffer of {bytes} bytes is too small")));
        }
        let capacity = ((bytes - CONTROL_BYTES) / 8) as usize;
        let ctl = Int32Array::new_with_byte_offset_and_length(sab, 0, CONTROL_BYTES / 4);
        let half = |i: u32| Float32Array::new_with_byte_offset_and_length(sab, CONTROL_BYTES + i * capacity as u32 * 4, capacity as u32);
        Ok(JsBoard { ctl, halves: [half(0), half(1)], capacity, ranks: ranks as i32 })
    }

    fn load(&self, i: u32) -> i32 {
        Atomics::load(&self.ctl, i).unwrap_or(0)
    }

    fn abort(&self) {
        let _ = Atomics::store(&self.ctl, ABORT, 1);
        let _ = Atomics::notify(&self.ctl, GENERATION);
    }
}

impl Board for JsBoard {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn write(&self, half: usize, at: usize, data: &[f32]) {
        self.halves[half].subarray(at as u32, (at + data.len()) as u32).copy_from(data);
    }

    fn read(&self, half: usize, at: usize, out: &mut [f32]) {
        self.halves[half].subarray(at as u32, (at + out.len()) as u32).copy_to(out);
    }

    fn barrier(&self) -> Result<()> {
        let dead = || Error::Input { name: "threads".into(), problem: "another worker thread stopped (it was terminated or failed)".into() };
        if self.load(ABORT) != 0 {
            return Err(dead());
        }
        let generation = self.load(GENERATION);
        let arrived = Atomics::add(&self.ctl, ARRIVED, 1).map_err(|_| dead())? + 1;
        if arrived == self.ranks {
            let _ = Atomics::store(&self.ctl, ARRIVED, 0);
            let _ = Atomics::add(&self.ctl, GENERATION, 1);
            let _ = Atomics::notify(&self.ctl, GENERATION);
            return Ok(());
        }
        for _ in 0..SPIN {
            if self.load(GENERATION) != generation {
                return Ok(());
            }
        }
        let start = js_sys::Date::now();
        loop {
            if self.load(ABORT) != 0 {
                return Err(dead());
            }
            if self.load(GENERATION) != generation {
                return Ok(());
            }
            if js_sys::Date::now() - start > GIVE_UP_MS {
                self.abort();
                return Err(Error::Input { name: "threads".into(), problem: format!("the other worker threads did not answer for {} s", GIVE_UP_MS / 1e3) });
            }
            let _ = Atomics::wait_with_timeout(&self.ctl, GENERATION, generation, 50.0);
        }
    }
}

/// Rank `rank` of `ranks` over the page's exchange buffer.
pub fn shard(rank: usize, ranks: usize, sab: &js_sys::SharedArrayBuffer) -> Result<Arc<Shard>> {
    Ok(Arc::new(Shard::new(rank, ranks, Arc::new(JsBoard::new(sab, ranks)?))?))
}

/// A weights file in JS memory (the caller's bytes, or the page's shared copy), read by range; or
/// only its first bytes, standing for a file of `len` (what reading the header needs).
pub struct JsSource {
    bytes: Uint8Array,
    len: usize,
}

impl JsSource {
    /// The whole file.
    pub fn new(bytes: Uint8Array) -> JsSource {
        let len = bytes.length() as usize;
        JsSource { bytes, len }
    }

    /// The first bytes of a file of `len` bytes (reads past them give zeros).
    pub fn head(bytes: Uint8Array, len: usize) -> JsSource {
        JsSource { len: len.max(bytes.length() as usize), bytes }
    }
}

// SAFETY: as for `JsBoard`, one thread per instance.
unsafe impl Send for JsSource {}
unsafe impl Sync for JsSource {}

impl crate::model::ByteSource for JsSource {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, start: usize, end: usize) -> Vec<u8> {
        let have = self.bytes.length() as usize;
        let mut v = if start < have { self.bytes.subarray(start as u32, end.min(have) as u32).to_vec() } else { Vec::new() };
        v.resize(end - start, 0);
        v
    }
}
