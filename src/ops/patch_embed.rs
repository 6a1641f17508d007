//! Patch embedding as an implicit GEMM over the image (no im2col buffer), with the prefix tokens
//! and position embeddings folded into the epilogue.

use super::shader::specialize;
use super::{invalid, matmul::SMALL, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params {
    m: u32, n: u32, k: u32, channels: u32,
    height: u32, width: u32, psize: u32, grid_w: u32,
    tokens: u32, prefix: u32, _pad0: u32, _pad1: u32,
});

pub(crate) struct PatchEmbed {
    pub patch: usize,
    pub prefix: usize,
}

fn decl(prefix: bool) -> KernelDecl {
    let mut bindings = vec![
        Binding::output("out"),
        Binding::activation(0, "image"),
        Binding::weight(1, "b"),
        Binding::weight(2, "bias"),
        Binding::weight(3, "pos"),
    ];
    let mut flags: Vec<&'static str> = Vec::new();
    if prefix {
        flags.push("PREFIX");
        bindings.push(Binding::weight(4, "prefix_tokens"));
    }
    KernelDecl::new::<Params>(specialize(&["patch_embed", "gemm_load_b", "gemm"], &SMALL.consts(), &flags), bindings)
}

impl OpDef for PatchEmbed {
    fn kind(&self) -> &'static str {
        "patch_embed"
    }

    fn arity(&self) -> usize {
        4 + (self.prefix > 0) as usize
    }

    fn storage_input(&self) -> usize {
        1
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (patch, prefix) = (self.patch, self.prefix);
        let (image, weight, bias, pos) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        if image.shape.len() != 4 {
            return Err(shape_err(node, image, "[B, C, H, W]"));
        }
        let (b, c, h, w) = (image.shape[0], image.shape[1], image.shape[2], image.shape[3]);
        if patch == 0 || patch > h || patch > w {
            return Err(invalid(node, format!("patch size {patch} does not fit a {h}x{w} image")));
        }
        let k = c * patch * patch;
        if weight.shape.len() != 2 || weight.shape[0] != k {
            return Err(shape_err(node, weight, format!("[{k}, D] (channels x patch x patch = {c} x {patch} x {patch})")));
        }
        let d = weight.shape[1];
        if bias.shape != [d] {
            return Err(shape_err(node, bias, format!("[{d}]")));
        }
        let tokens = prefix + (h / patch) * (w / patch);
        if pos.shape != [tokens, d] {
            return Err(shape_err(
                node,
                pos,
                format!("[{tokens}, {d}] ({prefix} prefix + {}x{} patches)", h / patch, w / patch),
            ));
        }
        if prefix > 0 && inputs[4].shape != [prefix, d] {
            return Err(shape_err(node, inputs[4], format!("[{prefix}, {d}]")));
        }
        Ok(vec![b, tokens, d])
    }

    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let s = &inputs[0].shape;
        let (c, h, w) = (s[1] as u64, s[2] as u64, s[3] as u64);
        let (b, tokens, d) = (output.shape[0] as u64, output.shape[1] as u64, output.shape[2] as u64);
        let p = self.patch as u64;
        let (m, k) = (b * tokens, c * p * p);
        let params = Params {
            m: m as u32,
            n: d as u32,
            k: k as u32,
            channels: c as u32,
            height: h as u32,
            width: w as u32,
            psize: p as u32,
            grid_w: (w / p) as u32,
            tokens: tokens as u32,
            prefix: self.prefix as u32,
            ..Default::default()
        };
        let patches = b * (tokens - self.prefix as u64);
        let groups = [d.div_ceil(SMALL.bn as u64) as u32, m.div_ceil(SMALL.bm as u64) as u32, 1];
        vec![Kernel::new(self.kind(), decl(self.prefix > 0), params, groups, 2.0 * (patches * k * d) as f64)]
    }

    fn cpu_kernel(&self, cpu: &Cpu, node: &str, inputs: &[&TensorInfo], output: &TensorInfo, weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let b = super::need_weight(node, weights, 1, "weight")?.packed(crate::cpu::gemm::tile(cpu.isa()).1)?;
        let s = &inputs[0].shape;
        let (tokens, d) = (output.shape[1], output.shape[2]);
        Ok(Box::new(PatchEmbedCpu { image: [s[0], s[1], s[2], s[3]], patch: self.patch, prefix: self.prefix, tokens, d, b }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    vec![decl(false), decl(true)]
}

struct PatchEmbedCpu {
    image: [usize; 4],
    patch: usize,
    prefix: usize,
    tokens: usize,
    d: usize,
    b: std::sync::Arc<crate::cpu::gemm::PackedB>,
}

impl CpuKernel for PatchEmbedCpu {
    fn name(&self) -> &'static str {
        "patch_gemm"
    }

    /// The patches of one image, `(patches, C p p)`.
    fn scratch(&self) -> usize {
        (self.tokens - self.prefix) * self.b.k
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], scratch: &mut [f32]) {
        use crate::cpu::gemm::{gemm, Act, Epilogue, Gemm};
        let [batch, c, h, w] = self.image;
        let (p, d, t, prefix) = (self.patch, self.d, self.tokens, self.prefix);
        let (bias, pos) = (ins[2], ins[3]);
        let n = t - prefix;
        let rows = &mut scratch[..n * self.b.k];
        for bi in 0..batch {
            crate::cpu::kernels::patches(&ins[0][bi * c * h * w..(bi + 1) * c * h * w], c, h, w, p, rows);
            // Patch rows: x W + bias + the position embedding of their token.
            let epi = Epilogue { bias: Some(bias), act: Act::None, residual: Some((&pos[prefix * d..], d)), accumulate: false };
            gemm(cpu, &Gemm::new(n, rows, self.b.k, &self.b, d), &mut out[(bi * t + prefix) * d..(bi + 1) * t * d], &epi);
            // Prefix rows: the token plus its position embedding.
            for ti in 0..prefix {
                let o = &mut out[(bi * t + ti) * d..(bi * t + ti + 1) * d];
                o.iter_mut().zip(&ins[4][ti * d..(ti + 1) * d]).zip(&pos[ti * d..(ti + 1) * d]).for_each(|((o, x), q)| *o = x + q);
            }
        }
    }
}
