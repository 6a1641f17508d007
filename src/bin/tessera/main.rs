//! The `tessera` command-line tool.

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod commands;
#[cfg(not(target_arch = "wasm32"))]
mod depth;
#[cfg(not(target_arch = "wasm32"))]
mod eval;
#[cfg(not(target_arch = "wasm32"))]
mod hub;
#[cfg(not(target_arch = "wasm32"))]
mod interrupt;
#[cfg(not(target_arch = "wasm32"))]
mod models;
#[cfg(not(target_arch = "wasm32"))]
mod out;
#[cfg(not(target_arch = "wasm32"))]
mod quantize;
#[cfg(not(target_arch = "wasm32"))]
mod search;
#[cfg(not(target_arch = "wasm32"))]
mod soak;
#[cfg(not(target_arch = "wasm32"))]
mod sweep;
#[cfg(not(target_arch = "wasm32"))]
mod text;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::{Parser, Subcommand};

    /// tessera: Vision Transformers on any GPU through WebGPU (Vulkan, Metal, DX12), or on the CPU.
    ///
    /// The device is chosen for you (--device auto): a GPU adapter when there is a real one, else
    /// the CPU backend. Pick an adapter with TESSERA_ADAPTER=<part of its name> and
    /// TESSERA_BACKEND=vulkan|metal|dx12|gl, or --adapter / --backend. TESSERA_MEMORY_BUDGET=4GiB
    /// bounds the memory the engine may hold on the device.
    #[derive(Parser)]
    #[command(name = "tessera", version, about, long_about)]
    struct Cli {
        /// Where to run: auto (a real GPU when there is one, else the CPU backend), gpu (any
        /// adapter, software ones included) or cpu; overrides TESSERA_DEVICE.
        #[arg(long, global = true)]
        device: Option<String>,
        /// Threads of the CPU backend (default: one per core); overrides TESSERA_THREADS.
        #[arg(long, global = true)]
        threads: Option<String>,
        /// Use the adapter whose name contains this (case-insensitive); overrides TESSERA_ADAPTER.
        #[arg(long, global = true)]
        adapter: Option<String>,
        /// Restrict to these backends (comma-separated: vulkan, metal, dx12, gl); overrides TESSERA_BACKEND.
        #[arg(long, global = true)]
        backend: Option<String>,
        /// Time the candidate GEMM and attention kernels of each new shape and keep the fastest,
        /// cached per adapter (also TESSERA_TUNE=1; cache: TESSERA_TUNE_CACHE or ~/.cache/tessera/tuning.json).
        #[arg(long, global = true)]
        tune: bool,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Top-k classes for images (files or folders), with the embedded model or --model.
        Classify(commands::ClassifyArgs),
        /// Accuracy on the Fashion-MNIST test set (10,000 images) through the engine.
        Eval(eval::EvalArgs),
        /// Image embeddings (pooler output, CLS token or mean of patch tokens).
        Embed(commands::EmbedArgs),
        /// The last layer's CLS attention over the patches (for a model without a class token,
        /// SigLIP's, its attention-pooling head's), overlaid on the image as a PNG.
        Attention(commands::AttentionArgs),
        /// Run on a pixel_values tensor exactly as `model(pixel_values=...)` in transformers.
        Run(commands::RunArgs),
        /// A depth map per image at the image's own size with a depth model (Depth Anything):
        /// colour-mapped PNGs, or 16-bit PNGs of the values with --raw.
        Depth(depth::DepthArgs),
        /// Run the model in a loop and load it repeatedly, watching resident memory.
        Soak(soak::SoakArgs),
        /// Accuracy, tokens, throughput and latency at several patch sizes (the patch kernel
        /// PI-resized to each), or for a NaFlex checkpoint at several patch budgets
        /// (--max-patches), with a chart of accuracy against throughput.
        Sweep(sweep::SweepArgs),
        /// List the adapters and describe the device tessera would use, and why; with --model or
        /// --patch-size, also the model as it would run.
        Info(commands::InfoArgs),
        /// Kernel throughput on the ViT-B/16 shapes, or a model's latency and per-op profile.
        Bench(bench::BenchArgs),
        /// Quantize a checkpoint's Linear layers to 8 or 4 bits (compressed-tensors
        /// pack-quantized): a checkpoint folder 4x or 7x smaller that loads like any other.
        Quantize(quantize::QuantizeArgs),
        /// Rank a folder of images by a text query with a CLIP model (image embeddings cached in
        /// the folder, so later queries are instant).
        Search(search::SearchArgs),
    }

    let cli = Cli::parse();
    quiet_display_probe();
    keep_freed_memory();
    interrupt::install();
    let result = (|| -> anyhow::Result<()> {
        let mut opts = tessera::DeviceOptions::from_env()?;
        if let Some(d) = &cli.device {
            opts.choice = tessera::DeviceChoice::parse(d, "--device")?;
        }
        if let Some(t) = &cli.threads {
            opts.cpu.threads = Some(tessera::cpu::parse_threads(t).ok_or_else(|| anyhow::anyhow!("--threads {t}: a thread count from 1 to {}", tessera::cpu::MAX_THREADS))?);
        }
        if let Some(a) = cli.adapter {
            opts.gpu.adapter_name = Some(a);
        }
        if cli.tune {
            opts.gpu.tune = true;
        }
        if let Some(b) = cli.backend {
            opts.gpu.backends = Some(tessera::gpu::parse_backends(&b)?);
        }
        let opened = pollster::block_on(tessera::Device::open(&opts))?;
        let device = opened.device;
        if let Command::Info(args) = &cli.command {
            println!("adapters on this machine:");
            for a in tessera::gpu::list_adapters() {
                println!("  {a}");
            }
            println!("\nselected ({:?}): {}, because {}\n{}", opts.choice, device.name(), opened.reason, device.report());
            return commands::info_model(&device, args);
        }
        if let Some(g) = device.gpu().filter(|g| g.tuning() && !g.report().timestamp_query) {
            eprintln!("note: {} has no timestamp queries; --tune times kernels with the wall clock", g.report().name);
        }
        match cli.command {
            Command::Bench(args) => bench::run(&device, &args),
            Command::Classify(args) if args.zero_shot() => text::zero_shot(&device, &args),
            Command::Classify(args) => commands::classify(&device, &args),
            Command::Eval(args) => eval::eval(&device, &args),
            Command::Embed(args) if args.texts() => text::embed_texts(&device, &args),
            Command::Embed(args) => commands::embed(&device, &args),
            Command::Attention(args) => commands::attention(&device, &args),
            Command::Run(args) => commands::run(&device, &args),
            Command::Depth(args) => depth::run(&device, &args),
            Command::Soak(args) => soak::soak(&device, &args),
            Command::Sweep(args) => sweep::run(&device, &args),
            Command::Quantize(args) => quantize::run(&device, &args),
            Command::Search(args) => search::run(&device, &args),
            Command::Info(_) => Ok(()),
        }
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<interrupt::Interrupted>() => {
            eprintln!("{e}");
            std::process::ExitCode::from(interrupt::EXIT_CODE)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan device-select layer, loaded implicitly on Linux, connects to the Wayland and X
/// displays when the adapters are listed, to put the GPU driving the screen first; on a headless
/// machine that prints `error: XDG_RUNTIME_DIR is invalid or not set` twice. tessera orders the
/// adapters itself and draws nothing, so the layer is turned off (unless the user set its switch).
#[cfg(target_os = "linux")]
fn quiet_display_probe() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

#[cfg(not(target_os = "linux"))]
fn quiet_display_probe() {}

/// Images are decoded on worker threads, each image a few short-lived buffers of megabytes. glibc
/// returns such buffers of a thread's arena to the kernel when they are freed and faults them in
/// again for the next image: on a folder of 2400x1600 JPEGs that cost as much time as the decoding
/// (a million page faults for 120 images). Fixed thresholds keep them in the heap for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

#[cfg(not(any(target_arch = "wasm32", all(target_os = "linux", target_env = "gnu"))))]
fn keep_freed_memory() {}

#[cfg(target_arch = "wasm32")]
fn main() {}
