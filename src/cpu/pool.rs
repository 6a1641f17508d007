//! A small fork-join pool for the CPU kernels: `run(tasks, f)` calls `f(0..tasks)` on the calling
//! thread and the workers, each taking the next task index from a shared counter, and returns when
//! all are done. Workers spin briefly between jobs (an inference is a few hundred back-to-back
//! parallel regions, each a fraction of a millisecond) and then sleep. With one thread, and in
//! wasm, everything runs on the caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// How long a worker polls for the next job before it sleeps, in spin iterations (tens of
/// microseconds).
const SPIN: u32 = 20_000;

/// A job as the workers see it: a task function with its lifetime erased (`run` does not return
/// before every worker is done with it) and the task count.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
}

// SAFETY: the pointee is `Sync` and outlives every use (see `Pool::run`).
unsafe impl Send for Job {}

struct Shared {
    /// The current job and its generation (incremented per job).
    job: Mutex<(u64, Option<Job>)>,
    wake: Condvar,
    generation: AtomicUsize,
    next: AtomicUsize,
    /// Workers still inside the current job.
    busy: AtomicUsize,
    done: Condvar,
    done_lock: Mutex<()>,
    stop: std::sync::atomic::AtomicBool,
}

/// The pool: `threads - 1` workers plus the caller.
pub struct Pool {
    threads: usize,
    shared: Option<Arc<Shared>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    // One job at a time: concurrent callers (two models run from two threads) take turns.
    running: Mutex<()>,
}

impl Pool {
    /// A pool of `threads` (at least 1; the caller is one of them).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        if threads == 1 || cfg!(target_arch = "wasm32") {
            return Pool { threads: 1, shared: None, workers: Vec::new(), running: Mutex::new(()) };
        }
        let shared = Arc::new(Shared {
            job: Mutex::new((0, None)),
            wake: Condvar::new(),
            generation: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            done: Condvar::new(),
            done_lock: Mutex::new(()),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let mut workers = Vec::new();
        for i in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new().name(format!("tessera-cpu-{i}")).spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                // Fewer threads than asked (a limited environment): the pool still works.
                Err(_) => break,
            }
        }
        let threads = workers.len() + 1;
        Pool { threads, shared: Some(shared), workers, running: Mutex::new(()) }
    }

    /// Threads that run tasks, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(i)` for every `i` in `0..tasks`, spread over the pool; returns when all are done.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let Some(s) = self.shared.as_ref().filter(|_| tasks > 1) else {
            (0..tasks).for_each(f);
            return;
        };
        let _turn = crate::lock(&self.running);
        // SAFETY of the erased lifetime: every worker that took this job has decremented `busy`
        // before this function returns, and none takes it after (the generation moves on and
        // the job is cleared).
        let job = Job { f: unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) }, tasks };
        s.next.store(0, Ordering::SeqCst);
        s.busy.store(self.workers.len(), Ordering::SeqCst);
        {
            let mut g = crate::lock(&s.job);
            g.0 += 1;
            g.1 = Some(job);
            s.generation.fetch_add(1, Ordering::SeqCst);
        }
        s.wake.notify_all();
        take_tasks(s, job);
        // Wait for the workers: spin first, then sleep.
        let mut spins = 0u32;
        while s.busy.load(Ordering::Acquire) != 0 {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let g = crate::lock(&s.done_lock);
                if s.busy.load(Ordering::Acquire) != 0 {
                    let _ = s.done.wait_timeout(g, std::time::Duration::from_millis(1));
                }
            }
        }
        crate::lock(&s.job).1 = None;
    }
}

/// Takes task indices until none are left.
fn take_tasks(s: &Shared, job: Job) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.tasks {
            break;
        }
        // SAFETY: `Pool::run` keeps the function alive until every worker is done.
        unsafe { (*job.f)(i) };
    }
}

fn worker(s: &Shared) {
    let mut seen = 0usize;
    loop {
        // Spin on the generation, then sleep on the condition variable.
        let mut spins = 0u32;
        while s.generation.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Relaxed) {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let g = crate::lock(&s.job);
                if s.generation.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Relaxed) {
                    let _ = s.wake.wait_timeout(g, std::time::Duration::from_millis(50));
                }
                spins = 0;
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = s.generation.load(Ordering::Acquire);
        let job = crate::lock(&s.job).1;
        if let Some(job) = job {
            take_tasks(s, job);
        }
        if s.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = crate::lock(&s.done_lock);
            s.done.notify_all();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.stop.store(true, Ordering::Relaxed);
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_across_many_jobs() {
        let pool = Pool::new(3);
        for tasks in [0usize, 1, 2, 7, 100] {
            for _ in 0..50 {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn two_callers_take_turns() {
        let pool = Arc::new(Pool::new(2));
        let total = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (p, t) = (pool.clone(), total.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        p.run(5, &|_| {
                            t.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(total.load(Ordering::Relaxed), 2 * 200 * 5);
    }
}

