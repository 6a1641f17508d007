//! The browser API (wasm32, on WebGPU or the CPU backend): thin bindings over the same engine and
//! models. Results cross as JSON strings or typed arrays; errors as JS `Error`s with the crate's
//! message and kind. The JavaScript package in `web/` wraps these in the documented API (and
//! makes the `auto` choice of device, which needs the browser's adapter info).

use crate::error::Error;
use crate::model::{decode_image, Checkpoint, Model, RunOptions};
use crate::{Cpu, CpuOptions, Device, Gpu, GpuOptions};
use js_sys::{Float32Array, Object, Reflect};
use wasm_bindgen::prelude::*;

fn js_err(e: Error) -> JsError {
    JsError::new(&format!("[{}] {e}", e.kind()))
}

#[wasm_bindgen(start)]
fn start() {
    // Diagnostics only: errors are returned as values, never raised by panicking.
    console_error_panic_hook::set_once();
}

/// An open device: a WebGPU adapter or the CPU backend.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
}

/// A checkpoint's weights in JS memory, read by range (never copied whole into the wasm heap).
fn checkpoint(name: &str, config: &[u8], weights: js_sys::Uint8Array, preprocessor: Option<&[u8]>) -> Result<Checkpoint, JsError> {
    Checkpoint::from_source(name, config, Box::new(crate::wasm_threads::JsSource::new(weights)), preprocessor).map_err(js_err)
}

#[wasm_bindgen]
impl Engine {
    /// Opens `device`: `"webgpu"` (the browser's adapter) or `"cpu"` (the CPU backend, in this
    /// thread). `memory_budget` (bytes) bounds the memory the engine may hold (browsers do not say
    /// how much a GPU has, so there is none by default on WebGPU). With `tune`, the candidate
    /// kernels of each new shape are timed (where the browser grants timestamp queries) and the
    /// fastest kept for this engine's lifetime.
    pub async fn create(device: String, memory_budget: Option<f64>, tune: Option<bool>) -> Result<Engine, JsError> {
        let budget = memory_budget.filter(|b| b.is_finite() && *b >= 0.0).map(|b| b as u64);
        let device = match device.as_str() {
            "cpu" => Device::Cpu(Cpu::new(&CpuOptions { memory_budget: budget, threads: Some(1), ..Default::default() }).map_err(js_err)?),
            "webgpu" | "gpu" => {
                let opts = GpuOptions { memory_budget: budget, tune: tune.unwrap_or(false), ..Default::default() };
                Device::Gpu(Gpu::new(&opts).await.map_err(js_err)?)
            }
            other => return Err(JsError::new(&format!("[input] device `{other}`: use \"auto\", \"webgpu\" or \"cpu\""))),
        };
        Ok(Engine { device })
    }

    /// The CPU backend as rank `rank` of `ranks` worker threads that split every matrix product
    /// and attention between them, exchanging through `board` (a SharedArrayBuffer the page made
    /// for the group; see `wasm_threads`). Each rank runs in its own worker, on its own thread.
    #[wasm_bindgen(js_name = createRank)]
    pub fn create_rank(rank: u32, ranks: u32, board: js_sys::SharedArrayBuffer, memory_budget: Option<f64>) -> Result<Engine, JsError> {
        let budget = memory_budget.filter(|b| b.is_finite() && *b >= 0.0).map(|b| b as u64);
        let shard = crate::wasm_threads::shard(rank as usize, ranks as usize, &board).map_err(js_err)?;
        let cpu = Cpu::new(&CpuOptions { memory_budget: budget, threads: Some(1), shard: Some(shard), ..Default::default() }).map_err(js_err)?;
        Ok(Engine { device: Device::Cpu(cpu) })
    }

    /// The patch grids of a checkpoint's image tower without loading it (its config, the first
    /// bytes of its weights file, which hold the header, the file's length, its preprocessing),
    /// at `patch_size` where given: what [`WasmModel::grid`] answers, for a page whose model runs
    /// in worker threads.
    #[wasm_bindgen(js_name = gridOf)]
    pub fn grid_of(name: &str, config: &[u8], header: js_sys::Uint8Array, weights_len: f64, preprocessor: Option<Vec<u8>>, patch_size: Option<u32>) -> Result<WasmGrid, JsError> {
        let source = crate::wasm_threads::JsSource::head(header, weights_len.max(0.0) as usize);
        let ck = Checkpoint::from_source(name, config, Box::new(source), preprocessor.as_deref()).map_err(js_err)?;
        let patch = patch_size.map_or(ck.config.patch_size, |p| p as usize);
        Ok(WasmGrid { pre: ck.preprocessor.clone(), patch: if ck.has_image_tower() { patch } else { 0 }, prefix: ck.config.prefix_tokens(), layers: ck.config.num_layers })
    }

    /// `"webgpu"` or `"cpu"`.
    pub fn device(&self) -> String {
        if self.device.cpu().is_some() { "cpu" } else { "webgpu" }.into()
    }

    /// Bytes the engine holds on its device now (weights, activations, staging of live models).
    #[wasm_bindgen(js_name = memoryInUse)]
    pub fn memory_in_use(&self) -> f64 {
        self.device.memory_in_use() as f64
    }

    /// What the autotuner did: `{"enabled", "measured", "reused", "choices"}` as JSON, `choices`
    /// mapping each shape to `{"choice", "ms": {candidate: ms per dispatch}}`.
    #[wasm_bindgen(js_name = tuningStats)]
    pub fn tuning_stats(&self) -> String {
        let Some(gpu) = self.device.gpu() else {
            return serde_json::json!({"enabled": false, "measured": 0, "reused": 0, "choices": {}}).to_string();
        };
        let t = gpu.tuning_stats();
        let choices = gpu.tuning_choices();
        serde_json::json!({"enabled": gpu.tuning(), "measured": t.measured, "reused": t.reused, "choices": choices, "note": t.timing_note}).to_string()
    }

    /// The memory budget in bytes, if one was set.
    #[wasm_bindgen(js_name = memoryBudget)]
    pub fn memory_budget(&self) -> Option<f64> {
        self.device.memory_budget().map(|b| b as f64)
    }

    /// The device, its features and limits, as JSON.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> String {
        match &self.device {
            Device::Gpu(gpu) => {
                let r = gpu.report();
                serde_json::json!({
                    "name": r.name, "backend": r.backend, "deviceType": r.device_type, "driver": r.driver,
                    "shaderF16": r.shader_f16, "timestampQuery": r.timestamp_query,
                    "maxBufferSize": r.max_buffer_size, "maxStorageBufferBindingSize": r.max_storage_buffer_binding_size,
                    "maxWorkgroupStorage": r.max_workgroup_storage, "maxInvocations": r.max_invocations,
                })
                .to_string()
            }
            Device::Cpu(cpu) => serde_json::json!({
                "name": self.device.name(), "backend": "cpu", "deviceType": "Cpu", "driver": "",
                "shaderF16": false, "timestampQuery": false, "isa": cpu.isa().name(), "threads": cpu.shard().map_or(cpu.threads(), |s| s.ranks()),
                "rank": cpu.shard().map(|s| s.rank()),
            })
            .to_string(),
        }
    }

    /// Whether the GPU device was lost (then create a new engine and load the model again); never
    /// on the CPU backend.
    #[wasm_bindgen(js_name = isLost)]
    pub fn is_lost(&self) -> bool {
        self.device.gpu().is_some_and(|g| g.is_lost())
    }

    /// Destroys the GPU device, as a GPU reset would (for testing recovery); nothing on the CPU
    /// backend.
    pub fn destroy(&self) {
        if let Some(g) = self.device.gpu() {
            g.destroy();
        }
    }

    /// Loads a checkpoint from its files' bytes and uploads its weights, at `patch_size` where
    /// given (the patch kernel PI-resized from the checkpoint's own), in int8 arithmetic where
    /// `int8` (8-bit checkpoints on the CPU backend).
    #[wasm_bindgen(js_name = loadModel)]
    #[allow(clippy::too_many_arguments)]
    pub fn load_model(
        &self,
        name: &str,
        config: &[u8],
        weights: js_sys::Uint8Array,
        preprocessor: Option<Vec<u8>>,
        f16: Option<bool>,
        patch_size: Option<u32>,
        int8: Option<bool>,
    ) -> Result<WasmModel, JsError> {
        let ck = checkpoint(name, config, weights, preprocessor.as_deref())?;
        let storage = if f16.unwrap_or(false) { crate::DType::F16 } else { crate::DType::F32 };
        let arithmetic = if int8.unwrap_or(false) { crate::quant::Arithmetic::Int8 } else { crate::quant::Arithmetic::Dequantized };
        let opts = crate::LoadOptions { storage, patch_size: patch_size.map(|p| p as usize), arithmetic, ..Default::default() };
        let model = Model::load_with(&self.device, &ck, opts).map_err(js_err)?;
        Ok(WasmModel { model: Some(model) })
    }
}

/// An attention map as the package's JSON.
fn attention_json(a: &crate::model::AttentionMap) -> String {
    serde_json::json!({"source": a.source, "rows": a.rows, "cols": a.cols, "heads": a.heads, "perHead": a.per_head, "mean": a.mean, "groups": a.groups}).to_string()
}

/// A model's preprocessing under the optional `maxPatches` budget of a JS call.
fn budget_pre(m: &Model, max_patches: Option<u32>) -> Result<crate::model::PreprocessorConfig, JsError> {
    m.preprocessor_with_budget(max_patches.map(|n| n as usize), "maxPatches").map_err(js_err)
}

/// A JS call's `merge` option as the package passes it: `"R"` or `"R:decreasing"` / `"R:constant"`.
fn merge_arg(merge: Option<String>) -> Result<Option<crate::Merge>, JsError> {
    let Some(s) = merge else { return Ok(None) };
    let bad = |p: String| js_err(Error::Input { name: "merge".into(), problem: p });
    let (r, schedule) = s.split_once(':').unwrap_or((&s, "constant"));
    let r: usize = r.trim().parse().map_err(|_| bad(format!("`{s}`: r must be a whole number of tokens, 0 or more")))?;
    let schedule = schedule.parse().map_err(bad)?;
    crate::Merge::new(r, schedule).map(Some).map_err(js_err)
}

/// [`WasmModel::grid`] of a model.
fn grid_json(m: &Model, width: u32, height: u32, max_patches: Option<u32>, merge: Option<String>) -> Result<String, JsError> {
    let merge = merge_arg(merge)?.unwrap_or(m.merge());
    grid_with(&budget_pre(m, max_patches)?, m.patch_size(), m.config.prefix_tokens(), m.config.num_layers, width, height, merge)
}

/// The grid an image of `width` x `height` runs on under `pre` with patches of `p` and `prefix`
/// tokens; with token merging, each of the `layers` layers' tokens in and merged, and the tokens left.
fn grid_with(pre: &crate::model::PreprocessorConfig, p: usize, prefix: usize, layers: usize, width: u32, height: u32, merge: crate::Merge) -> Result<String, JsError> {
    let (h, w) = pre.output_size(height as usize, width as usize);
    let (rows, cols) = (h / p, w / p);
    let tokens = prefix + rows * cols;
    let mut v = serde_json::json!({"width": w, "height": h, "rows": rows, "cols": cols, "tokens": tokens});
    if merge.is_on() {
        let plan = merge.plan(layers, tokens, prefix);
        let left = plan.last().map_or(tokens, |l| l.tokens - l.r);
        v["merge"] = serde_json::json!({"r": merge.r, "schedule": merge.schedule, "layers": plan, "tokensLeft": left});
    }
    Ok(v.to_string())
}

/// A checkpoint's patch grids ([`Engine::grid_of`]).
#[wasm_bindgen]
pub struct WasmGrid {
    pre: crate::model::PreprocessorConfig,
    patch: usize,
    prefix: usize,
    layers: usize,
}

#[wasm_bindgen]
impl WasmGrid {
    /// As [`WasmModel::grid`].
    pub fn grid(&self, width: u32, height: u32, max_patches: Option<u32>, merge: Option<String>) -> Result<String, JsError> {
        if self.patch == 0 {
            return Err(JsError::new("[input] a text tower alone has no image tower: it embeds texts only"));
        }
        let pre = match max_patches {
            Some(n) => self.pre.with_max_patches(n as usize).map_err(|p| js_err(Error::Input { name: "maxPatches".into(), problem: p }))?,
            None => self.pre.clone(),
        };
        grid_with(&pre, self.patch, self.prefix, self.layers, width, height, merge_arg(merge)?.unwrap_or_default())
    }
}

/// A model on the engine's device.
#[wasm_bindgen]
pub struct WasmModel {
    model: Option<Model>,
}

fn rgba_to_rgb(rgba: &[u8], width: u32, height: u32) -> Result<image::RgbImage, JsError> {
    if width == 0 || height == 0 || rgba.len() as u64 != 4 * width as u64 * height as u64 {
        return Err(JsError::new(&format!("[image] RGBA data of {} bytes does not make a {width}x{height} image", rgba.len())));
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    image::RgbImage::from_raw(width, height, rgb).ok_or_else(|| JsError::new("[image] bad image size"))
}

fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(obj, &JsValue::from_str(key), value).map_err(|_| JsError::new("cannot build the result object"))?;
    Ok(())
}

fn tensor(obj: &Object, key: &str, t: &crate::HostTensor) -> Result<(), JsError> {
    set(obj, key, &Float32Array::from(&t.data[..]).into())?;
    let dims = js_sys::Array::new();
    for d in &t.shape {
        dims.push(&JsValue::from_f64(*d as f64));
    }
    set(obj, &format!("{key}Dims"), &dims.into())
}

impl WasmModel {
    fn get(&self) -> Result<&Model, JsError> {
        self.model.as_ref().ok_or_else(|| JsError::new("[disposed] this model was disposed"))
    }

    /// The model's preprocessing under the optional `maxPatches` budget.
    fn pre(&self, max_patches: Option<u32>) -> Result<crate::model::PreprocessorConfig, JsError> {
        budget_pre(self.get()?, max_patches)
    }

    fn image(bytes: Option<Vec<u8>>, rgba: Option<Vec<u8>>, width: u32, height: u32, name: &str) -> Result<image::RgbImage, JsError> {
        match (bytes, rgba) {
            (Some(b), _) => decode_image(&b, name).map_err(js_err),
            (None, Some(p)) => rgba_to_rgb(&p, width, height),
            (None, None) => Err(JsError::new("[image] no image data")),
        }
    }
}

#[wasm_bindgen]
impl WasmModel {
    /// Config summary as JSON: family, head, labels, sizes.
    pub fn info(&self) -> Result<String, JsError> {
        let m = self.get()?;
        let c = &m.config;
        let a = m.arithmetic();
        Ok(serde_json::json!({
            "source": m.source, "family": format!("{:?}", c.family), "head": format!("{:?}", m.head()),
            "labels": c.labels, "hiddenSize": c.hidden_size, "layers": c.num_layers, "heads": c.num_heads,
            "imageSize": [c.image_size.0, c.image_size.1], "patchSize": c.patch_size,
            "originalPatchSize": m.original_patch_size(),
            "maxPatches": m.preprocessor.max_patches(),
            "weightBytes": m.weight_bytes(),
            "quantization": c.quant.as_ref().map(|q| serde_json::json!({ "bits": q.bits, "groupSize": q.group })),
            "arithmetic": serde_json::json!({ "int8Layers": a.int8, "quantizedLayers": a.quantized, "kernel": a.kernel, "text": a.to_string() }),
            "depth": c.depth.as_ref().map(|d| if d.metric { "metric" } else { "relative" }),
        })
        .to_string())
    }

    /// The depth of one image at its own size (a Depth Anything model): an object `{depth:
    /// Float32Array (height * width, row by row), width, height, modelWidth, modelHeight}`.
    pub async fn depth(&self, bytes: Option<Vec<u8>>, rgba: Option<Vec<u8>>, width: u32, height: u32, name: String) -> Result<Object, JsError> {
        let img = Self::image(bytes, rgba, width, height, &name)?;
        let d = self.get()?.depth(&img).await.map_err(js_err)?;
        let obj = Object::new();
        set(&obj, "depth", &Float32Array::from(&d.data[..]).into())?;
        for (k, v) in [("width", d.width), ("height", d.height), ("modelWidth", d.model_size.1), ("modelHeight", d.model_size.0)] {
            set(&obj, k, &JsValue::from(v as u32))?;
        }
        Ok(obj)
    }

    /// Top-k classes of one image, given as encoded file bytes (`bytes`, decoded exactly as
    /// natively) or as RGBA pixels. JSON `[{index, label, score}]`.
    pub async fn classify(
        &self,
        bytes: Option<Vec<u8>>,
        rgba: Option<Vec<u8>>,
        width: u32,
        height: u32,
        name: String,
        top_k: usize,
        max_patches: Option<u32>,
        merge: Option<String>,
    ) -> Result<String, JsError> {
        let img = Self::image(bytes, rgba, width, height, &name)?;
        let pre = self.pre(max_patches)?;
        let top = self.get()?.classify_with(&[&img], top_k, &pre, merge_arg(merge)?).await.map_err(js_err)?;
        Ok(serde_json::to_string(&top[0]).unwrap_or_default())
    }

    /// The embedding of one image (pooler output, else CLS token).
    pub async fn embed(&self, bytes: Option<Vec<u8>>, rgba: Option<Vec<u8>>, width: u32, height: u32, name: String, max_patches: Option<u32>, merge: Option<String>) -> Result<Float32Array, JsError> {
        let img = Self::image(bytes, rgba, width, height, &name)?;
        let pre = self.pre(max_patches)?;
        let e = self.get()?.embed_with(&[&img], &pre, merge_arg(merge)?).await.map_err(js_err)?;
        Ok(Float32Array::from(&e[0][..]))
    }

    /// Attention over the patch grid as JSON `{source, rows, cols, heads, perHead, mean}`: the
    /// class token's in the last layer (`source` "cls"), or the attention-pooling head's ("pool").
    pub async fn attention(&self, bytes: Option<Vec<u8>>, rgba: Option<Vec<u8>>, width: u32, height: u32, name: String, max_patches: Option<u32>, merge: Option<String>) -> Result<String, JsError> {
        let img = Self::image(bytes, rgba, width, height, &name)?;
        let pre = self.pre(max_patches)?;
        let a = self.get()?.attention_map_with(&img, &pre, merge_arg(merge)?).await.map_err(js_err)?;
        Ok(attention_json(&a))
    }

    /// The patch grid an image of `width` x `height` pixels runs on, under the optional budget:
    /// JSON `{width, height, rows, cols, tokens}` (the size it is resized to, the grid, and the
    /// tokens with the class token or registers).
    pub fn grid(&self, width: u32, height: u32, max_patches: Option<u32>, merge: Option<String>) -> Result<String, JsError> {
        grid_json(self.get()?, width, height, max_patches, merge)
    }

    /// Runs `pixel_values` (B, C, H, W) as `model(pixel_values=...)` does: `{logits, logitsDims,
    /// lastHiddenState, lastHiddenStateDims, poolerOutput, poolerOutputDims}` (absent where the
    /// model has none).
    pub async fn run(&self, pixels: Vec<f32>, dims: Vec<u32>, merge: Option<String>) -> Result<Object, JsError> {
        let [b, c, h, w] = dims[..] else {
            return Err(JsError::new(&format!("[input] dims must be [B, C, H, W], got {dims:?}")));
        };
        let merge = merge_arg(merge)?;
        let out = self
            .get()?
            .run(&pixels, [b as usize, c as usize, h as usize, w as usize], RunOptions { merge, ..Default::default() })
            .await
            .map_err(js_err)?;
        let obj = Object::new();
        if let Some(l) = &out.logits {
            tensor(&obj, "logits", l)?;
        }
        if let Some(t) = &out.last_hidden_state {
            tensor(&obj, "lastHiddenState", t)?;
        }
        if let Some(p) = &out.pooler_output {
            tensor(&obj, "poolerOutput", p)?;
        }
        if let Some(p) = &out.image_embeds {
            tensor(&obj, "imageEmbeds", p)?;
        }
        if let Some(d) = &out.predicted_depth {
            tensor(&obj, "predictedDepth", d)?;
        }
        Ok(obj)
    }

    /// Frees the model's memory; later calls reject.
    pub fn dispose(&mut self) {
        self.model = None;
    }
}

/// CLIP or SigLIP (the `text` build, `tessera-vit/text`): image and text towers with the
/// checkpoint's tokenizer, or a text tower alone.
#[cfg(feature = "text")]
#[wasm_bindgen]
pub struct WasmClip {
    inner: Option<ClipInner>,
}

#[cfg(feature = "text")]
enum ClipInner {
    Both(crate::model::clip::Clip),
    Text(crate::model::clip::TextEncoder),
}

#[cfg(feature = "text")]
#[wasm_bindgen]
impl Engine {
    /// Loads a CLIPModel or SiglipModel checkpoint from its files' bytes, with its tokenizer.json
    /// or (SigLIP) spiece.model, and tokenizer_config.json (which names the padding side) where it
    /// has one.
    #[wasm_bindgen(js_name = loadClip)]
    pub fn load_clip(
        &self,
        name: &str,
        config: &[u8],
        weights: js_sys::Uint8Array,
        preprocessor: Option<Vec<u8>>,
        tokenizer: Option<Vec<u8>>,
        tokenizer_config: Option<Vec<u8>>,
        sentencepiece: Option<Vec<u8>>,
    ) -> Result<WasmClip, JsError> {
        let ck = checkpoint(name, config, weights, preprocessor.as_deref())?
            .with_tokenizer(tokenizer)
            .with_tokenizer_config(tokenizer_config)
            .with_sentencepiece(sentencepiece);
        let inner = if !ck.has_image_tower() {
            ClipInner::Text(crate::model::clip::TextEncoder::load(&self.device, &ck).map_err(js_err)?)
        } else {
            ClipInner::Both(crate::model::clip::Clip::load(&self.device, &ck).map_err(js_err)?)
        };
        Ok(WasmClip { inner: Some(inner) })
    }
}

#[cfg(feature = "text")]
#[wasm_bindgen]
impl WasmClip {
    fn inner(&self) -> Result<&ClipInner, JsError> {
        self.inner.as_ref().ok_or_else(|| JsError::new("[disposed] this model was disposed"))
    }

    fn text(&self) -> Result<&crate::model::clip::TextEncoder, JsError> {
        Ok(match self.inner()? {
            ClipInner::Both(c) => &c.text,
            ClipInner::Text(t) => t,
        })
    }

    /// Both towers, or an input error for a text tower alone.
    fn get(&self) -> Result<&crate::model::clip::Clip, JsError> {
        match self.inner()? {
            ClipInner::Both(c) => Ok(c),
            ClipInner::Text(_) => Err(JsError::new("[input] a text tower alone has no image tower: it embeds texts only")),
        }
    }

    /// `{"source", "family", "textOnly", "projectionDim", "maxTokens", "logitScale", "logitBias",
    /// "scores"}` as JSON (`scores`: `softmax` for CLIP, `sigmoid` for SigLIP; the last three null
    /// for a text tower alone).
    pub fn info(&self) -> Result<String, JsError> {
        let t = &self.text()?.model;
        let kind = t.config.kind;
        let both = match self.inner()? {
            ClipInner::Both(c) => Some(c),
            ClipInner::Text(_) => None,
        };
        Ok(serde_json::json!({
            "source": t.source, "family": format!("{kind:?}").to_lowercase(), "textOnly": both.is_none(),
            "projectionDim": t.config.projection_dim.filter(|_| t.projects()).unwrap_or(t.config.hidden_size),
            "maxTokens": t.config.max_positions, "logitScale": both.map(|c| c.scale), "logitBias": both.and_then(|c| c.bias),
            "scores": both.map(|_| if kind.sigmoid_scores() { "sigmoid" } else { "softmax" }),
            "maxPatches": both.and_then(|c| c.vision.preprocessor.max_patches()),
        })
        .to_string())
    }

    /// Unit-length embeddings of `texts`, concatenated (N x projectionDim), and which were cut to
    /// the model's positions: `[embeddings, truncated]`.
    #[wasm_bindgen(js_name = embedText)]
    pub async fn embed_text(&self, texts: Vec<String>) -> Result<js_sys::Array, JsError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let e = self.text()?.embed_texts(&refs).await.map_err(js_err)?;
        let flat: Vec<f32> = e.embeddings.concat();
        let cut = js_sys::Array::new();
        for t in e.truncated {
            cut.push(&JsValue::from_bool(t));
        }
        Ok(js_sys::Array::of2(&Float32Array::from(&flat[..]), &cut))
    }

    /// The unit-length embedding of one image (encoded bytes or RGBA).
    #[wasm_bindgen(js_name = embedImage)]
    pub async fn embed_image(&self, bytes: Option<Vec<u8>>, rgba: Option<Vec<u8>>, width: u32, height: u32, name: String, max_patches: Option<u32>, merge: Option<String>) -> Result<Float32Array, JsError> {
        let img = WasmModel::image(bytes, rgba, width, height, &name)?;
        let vision = &self.get()?.vision;
        let pre = budget_pre(vision, max_patches)?;
        let e = vision.embed_with(&[&img], &pre, merge_arg(merge)?).await.map_err(js_err)?;
        Ok(Float32Array::from(&e[0][..]))
    }

    /// Zero-shot scores of one image over `labels` in `template`: JSON `[{label, score, logit}]`,
    /// best first.
    #[wasm_bindgen(js_name = zeroShot)]
    #[allow(clippy::too_many_arguments)]
    pub async fn zero_shot(
        &self,
        bytes: Option<Vec<u8>>,
        rgba: Option<Vec<u8>>,
        width: u32,
        height: u32,
        name: String,
        labels: Vec<String>,
        template: String,
        max_patches: Option<u32>,
        merge: Option<String>,
    ) -> Result<String, JsError> {
        let img = WasmModel::image(bytes, rgba, width, height, &name)?;
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let clip = self.get()?;
        let pre = budget_pre(&clip.vision, max_patches)?;
        let s = clip.zero_shot_with(&img, &refs, &template, &pre, merge_arg(merge)?).await.map_err(js_err)?;
        Ok(serde_json::to_string(&s).unwrap_or_default())
    }

    /// The image tower's attention map of one image ([`WasmModel::attention`]).
    pub async fn attention(&self, bytes: Option<Vec<u8>>, rgba: Option<Vec<u8>>, width: u32, height: u32, name: String, max_patches: Option<u32>, merge: Option<String>) -> Result<String, JsError> {
        let img = WasmModel::image(bytes, rgba, width, height, &name)?;
        let vision = &self.get()?.vision;
        let pre = budget_pre(vision, max_patches)?;
        Ok(attention_json(&vision.attention_map_with(&img, &pre, merge_arg(merge)?).await.map_err(js_err)?))
    }

    /// The grid the image tower runs an image of `width` x `height` pixels on ([`WasmModel::grid`]).
    pub fn grid(&self, width: u32, height: u32, max_patches: Option<u32>, merge: Option<String>) -> Result<String, JsError> {
        grid_json(&self.get()?.vision, width, height, max_patches, merge)
    }

    /// Frees the model's memory; later calls reject.
    pub fn dispose(&mut self) {
        self.inner = None;
    }
}
