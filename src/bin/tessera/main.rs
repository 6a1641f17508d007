//! The `tessera` command-line tool.

#[cfg(not(target_arch = "wasm32"))]
mod bench;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::{Parser, Subcommand};

    /// tessera: Vision Transformers on any GPU through WebGPU (Vulkan, Metal, DX12, or a CPU adapter).
    ///
    /// Pick an adapter with TESSERA_ADAPTER=<part of its name> and TESSERA_BACKEND=vulkan|metal|dx12|gl,
    /// or --adapter / --backend.
    #[derive(Parser)]
    #[command(name = "tessera", version, about, long_about)]
    struct Cli {
        /// Use the adapter whose name contains this (case-insensitive); overrides TESSERA_ADAPTER.
        #[arg(long, global = true)]
        adapter: Option<String>,
        /// Restrict to these backends (comma-separated: vulkan, metal, dx12, gl); overrides TESSERA_BACKEND.
        #[arg(long, global = true)]
        backend: Option<String>,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// List the adapters and describe the one tessera would use.
        Info,
        /// Measure the kernels on the ViT-B/16 shapes (GEMM, attention) and print GFLOP/s.
        Bench(bench::BenchArgs),
    }

    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        let mut opts = tessera::GpuOptions::from_env()?;
        if let Some(a) = cli.adapter {
            opts.adapter_name = Some(a);
        }
        if let Some(b) = cli.backend {
            opts.backends = Some(tessera::gpu::parse_backends(&b)?);
        }
        match cli.command {
            Command::Info => {
                println!("adapters on this machine:");
                for a in tessera::gpu::list_adapters() {
                    println!("  {a}");
                }
                let gpu = pollster::block_on(tessera::Gpu::new(&opts))?;
                println!("\nselected:\n{}", gpu.report());
                Ok(())
            }
            Command::Bench(args) => {
                let gpu = pollster::block_on(tessera::Gpu::new(&opts))?;
                bench::run(&gpu, &args)
            }
        }
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
