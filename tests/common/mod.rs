//! Shared helpers: one GPU per test binary (failing loudly when there is none) and a runner for
//! single-op graphs.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use tessera::reference::{self as r, Rng};
use tessera::{Activation, CompileOptions, Gpu, Graph, Op, Weights};

/// The adapter chosen by `TESSERA_ADAPTER` / `TESSERA_BACKEND`. A machine without one fails the
/// test: GPU tests never pass by doing nothing.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::from_env_blocking() {
        Ok(g) => {
            eprintln!("{}", g.report());
            g
        }
        Err(e) => panic!("GPU tests need an adapter: {e}"),
    })
    .clone()
}

/// The CPU backend (its best instruction set, the machine's threads), one per test binary.
pub fn cpu() -> Arc<tessera::Cpu> {
    static CPU: OnceLock<Arc<tessera::Cpu>> = OnceLock::new();
    CPU.get_or_init(|| tessera::Cpu::new(&tessera::CpuOptions::default()).expect("the CPU backend")).clone()
}

/// Both devices, named: the adapter of [`gpu`] and the CPU backend of [`cpu`].
pub fn devices() -> Vec<(&'static str, tessera::Device)> {
    vec![("gpu", tessera::Device::Gpu(gpu())), ("cpu", tessera::Device::Cpu(cpu()))]
}

/// A tensor fed to a single-op graph: name, shape, data, and whether it is a weight.
pub struct Arg<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
    pub weight: bool,
}

pub fn input<'a>(name: &'a str, shape: &[usize], data: &'a [f32]) -> Arg<'a> {
    Arg { name, shape: shape.to_vec(), data, weight: false }
}

pub fn weight<'a>(name: &'a str, shape: &[usize], data: &'a [f32]) -> Arg<'a> {
    Arg { name, shape: shape.to_vec(), data, weight: true }
}

thread_local! {
    /// The device `run_op` and `run_op_as` use on this thread (None: the GPU adapter).
    static DEVICE: std::cell::RefCell<Option<tessera::Device>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` once per device (the GPU adapter, then the CPU backend), with `run_op` on it.
pub fn each_device(f: impl Fn()) {
    for (name, d) in devices() {
        eprintln!("-- on {name}");
        DEVICE.with(|c| *c.borrow_mut() = Some(d));
        f();
    }
    DEVICE.with(|c| *c.borrow_mut() = None);
}

/// Builds a one-node graph, runs it once on this thread's device (see [`each_device`]; the GPU
/// adapter by default) and returns the output.
pub fn run_op(op: Op, args: &[Arg]) -> Vec<f32> {
    run_op_as(op, args, false).1.data
}

/// Like [`run_op`], with the graph storing f16 when `f16` (then weights are uploaded as f16, and
/// the output and every kernel that ran are checked to be f16); also returns each dispatch's node
/// and shader variant.
pub fn run_op_as(op: Op, args: &[Arg], f16: bool) -> (Vec<(String, String)>, tessera::HostTensor) {
    let device = DEVICE.with(|c| c.borrow().clone()).unwrap_or_else(|| tessera::Device::Gpu(gpu()));
    run_op_on(device, op, args, f16).expect("compile and run")
}

/// The adapter of [`gpu`] opened again with `family`'s kernel forced to `kernel` (as
/// `TESSERA_GEMM_TILE` / `TESSERA_ATTENTION_KERNEL` would).
pub fn gpu_forcing(family: &str, kernel: &str) -> Arc<Gpu> {
    let mut opts = tessera::GpuOptions::from_env().expect("options");
    opts.forced_kernels.insert(family.into(), kernel.into());
    Gpu::new_blocking(&opts).expect("GPU tests need an adapter")
}

/// Like [`run_op_as`] on `gpu`, returning compile and run errors.
pub fn run_op_on(device: impl Into<tessera::Device>, op: Op, args: &[Arg], f16: bool) -> tessera::Result<(Vec<(String, String)>, tessera::HostTensor)> {
    let device = device.into();
    let mut g = Graph::new();
    let mut w = Weights::new(&device);
    if f16 {
        assert!(device.has_f16(), "needs an adapter with shader-f16 (lavapipe has it)");
        g.set_storage(tessera::DType::F16);
        w = Weights::new_as(&device, tessera::DType::F16);
    }
    let mut ids = Vec::new();
    let mut feeds: Vec<(&str, &[f32])> = Vec::new();
    for a in args {
        if a.weight {
            ids.push(g.weight(a.name, &a.shape));
            w.insert(a.name, &a.shape, a.data).expect("upload weight");
        } else {
            ids.push(g.input(a.name, &a.shape));
            feeds.push((a.name, a.data));
        }
    }
    let out = g.op("op", op, &ids).expect("build graph");
    if f16 {
        assert_eq!(g.info(out).dtype, tessera::DType::F16);
    }
    g.output(out);
    let exe = pollster::block_on(tessera::Compiled::compile(&device, &g, &w, &CompileOptions::default()))?;
    let kernels: Vec<(String, String)> = match &exe {
        tessera::Compiled::Gpu(e) => e.kernels(),
        tessera::Compiled::Cpu(e) => e.kernel_choices().iter().map(|c| (c.node.clone(), c.variant.clone())).collect(),
    };
    if f16 {
        assert!(kernels.iter().all(|(_, v)| v.contains("F16")), "{kernels:?}");
    }
    let mut res = pollster::block_on(exe.run(&feeds))?;
    Ok((kernels, res.remove(0)))
}

/// Panics with the comparison's report when it fails; prints the max difference otherwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    match tessera::reference::compare(what, got, want, atol, rtol) {
        Ok(max) => eprintln!("{what}: OK, max diff {max:e}"),
        Err(msg) => panic!("{msg}"),
    }
}

#[allow(clippy::too_many_arguments)]
/// One matmul on seeded random data against the f64 reference (atol 1e-5, rtol 1e-4).
pub fn check_matmul(m: usize, k: usize, n: usize, bias: bool, act: Activation, residual: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let a = rng.vec(m * k, 1.0);
    let b = rng.vec(k * n, 1.0 / (k as f32).sqrt());
    let bv = rng.vec(n, 0.5);
    let rv = rng.vec(m * n, 1.0);
    let mut args = vec![input("a", &[m, k], &a), weight("b", &[k, n], &b)];
    if bias {
        args.push(weight("bias", &[n], &bv));
    }
    if residual {
        args.push(input("residual", &[m, n], &rv));
    }
    let got = run_op(Op::MatMul { bias, act, residual }, &args);
    let want = r::matmul(&a, &b, m, k, n, bias.then_some(&bv[..]), act, residual.then_some(&rv[..]));
    assert_close(&format!("matmul {m}x{k}x{n} bias={bias} act={act:?} residual={residual}"), &got, &want, 1e-5, 1e-4);
}

/// Every tensor of a safetensors file (f32), by name.
pub fn tensors(path: &std::path::Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())))
        .collect()
}

/// A scratch checkpoint folder made from a fixture's, for tests that load broken variants of it
/// (a changed config, a tensor taken out) and read the error. Removed when dropped.
pub struct Hostile {
    pub src: std::path::PathBuf,
    pub dir: std::path::PathBuf,
    pub config: serde_json::Value,
}

impl Hostile {
    /// `tag` names the folder (with the process id) so test binaries running at once do not share it.
    pub fn new(src: std::path::PathBuf, tag: &str) -> Hostile {
        let dir = std::env::temp_dir().join(format!("tessera-{tag}-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
        Hostile { src, dir, config }
    }

    /// Writes `cfg` with the given weights (and the fixture's preprocessor) into the folder.
    pub fn write(&self, cfg: &serde_json::Value, weights: &std::path::Path) {
        std::fs::write(self.dir.join("config.json"), serde_json::to_string(cfg).unwrap()).unwrap();
        std::fs::copy(weights, self.dir.join("model.safetensors")).unwrap();
        std::fs::copy(self.src.join("preprocessor_config.json"), self.dir.join("preprocessor_config.json")).unwrap();
    }

    /// The error loading the folder on the CPU backend gives (it must fail).
    pub fn load_error(&self) -> String {
        use tessera::model::{Checkpoint, Model};
        let cpu = tessera::Device::Cpu(cpu());
        match Checkpoint::from_dir(&self.dir).and_then(|ck| Model::load(&cpu, &ck).map(|_| ())) {
            Ok(()) => panic!("{} loaded", self.dir.display()),
            Err(e) => e.to_string(),
        }
    }

    /// The error for the fixture's config with `field` set to `v`.
    pub fn with(&self, field: &str, v: serde_json::Value) -> String {
        let mut c = self.config.clone();
        c[field] = v;
        self.with_config(&c)
    }

    /// The error for `cfg` with the fixture's weights.
    pub fn with_config(&self, cfg: &serde_json::Value) -> String {
        self.write(cfg, &self.src.join("model.safetensors"));
        self.load_error()
    }

    /// The error for the fixture's config and weights without the tensor `gone` (which the fixture must have).
    pub fn without(&self, gone: &str) -> String {
        let bytes = std::fs::read(self.src.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let views: Vec<(String, safetensors::tensor::TensorView)> = st.tensors().into_iter().filter(|(n, _)| n != gone).collect();
        assert_eq!(views.len() + 1, st.tensors().len(), "the fixture has {gone}");
        let stripped = self.dir.join("stripped.safetensors");
        safetensors::tensor::serialize_to_file(views, None, &stripped).unwrap();
        self.write(&self.config, &stripped);
        self.load_error()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
