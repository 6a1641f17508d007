/** An error from tessera: `kind` is stable ("no_webgpu": no WebGPU or no adapter in this browser, "model", "image", "input", "gpu", "network", "not_found", "disposed", "out_of_memory", "device_lost", ...). */
export interface TesseraError extends Error {
  kind: string;
}

export interface AdapterInfo {
  /** The adapter's name, or "CPU backend (simd128+relaxed, 2 threads)". */
  name: string;
  backend: string;
  deviceType: string;
  driver: string;
  shaderF16: boolean;
  timestampQuery: boolean;
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
  maxWorkgroupStorage?: number;
  maxInvocations?: number;
  /** The CPU backend's instruction set where it runs: "simd128+relaxed" (the relaxed-SIMD build, fused multiply-adds) or "simd128". */
  isa?: string;
  /** The CPU backend's threads (1 on the page's thread; more on worker threads). */
  threads?: number;
  /** The CPU backend runs on worker threads (`threads` > 1, or `worker: true`). */
  worker?: boolean;
}

export interface ModelInfo {
  source: string;
  /** 'Timm': a timm checkpoint (vit_*, deit_*, deit3_*, flexivit_*). */
  family: 'Vit' | 'Deit' | 'Dinov2' | 'DepthAnything' | 'Clip' | 'Siglip' | 'Siglip2' | 'Timm';
  /** 'Avg': a classifier on the mean of the patch tokens (timm's global_pool "avg"). */
  head: 'None' | 'Cls' | 'ClsDistilled' | 'ClsMeanPatch' | 'Avg';
  labels: string[];
  hiddenSize: number;
  layers: number;
  heads: number;
  imageSize: [number, number];
  /** The patch size the model runs at. */
  patchSize: number;
  /** The checkpoint's own patch size (differs from `patchSize` after `load(…, { patchSize })`). */
  originalPatchSize: number;
  /** A NaFlex checkpoint's (SigLIP 2) patch budget per image from its preprocessor config; null for a model that resizes to a fixed size. */
  maxPatches: number | null;
  /** Bytes the weights hold on the device (quantized weights at their packed size). */
  weightBytes: number;
  /** How the Linear layers are quantized (a compressed-tensors pack-quantized checkpoint): bits per weight and inputs per scale (null: one scale per output channel); null for a float checkpoint. */
  quantization: { bits: 8 | 4; groupSize: number | null } | null;
  /** How the quantized layers compute: how many of them in int8 arithmetic, with which integer kernel (null: none), and the same in words. */
  arithmetic: { int8Layers: number; quantizedLayers: number; kernel: 'avx512-vnni' | 'avx-vnni' | 'avx2' | 'portable' | null; text: string };
  /** A depth model's kind (Depth Anything: relative or metric depth); null for other models. */
  depth: 'relative' | 'metric' | null;
}

/** A depth map at the image's own size. */
export interface DepthMap {
  /** height x width values, row by row (relative depth: larger is nearer; metric: meters). */
  depth: Float32Array;
  width: number;
  height: number;
  /** The size the model ran at (the image resized as its processor asks). */
  modelWidth: number;
  modelHeight: number;
}

/** Paints `model.depth(image)`'s map onto a canvas at its size, the range stretched over the colour map; returns the range. */
export declare function paintDepth(canvas: HTMLCanvasElement | OffscreenCanvas, map: DepthMap, options?: { colormap?: 'inferno' | 'viridis' | 'gray' }): { min: number; max: number };

export interface Prediction {
  index: number;
  label: string;
  score: number;
}

export interface RunOutput {
  logits?: Float32Array;
  logitsDims?: number[];
  lastHiddenState: Float32Array;
  lastHiddenStateDims: number[];
  poolerOutput?: Float32Array;
  poolerOutputDims?: number[];
  /** CLIP: the pooled output projected into the image-text space (not normalized). */
  imageEmbeds?: Float32Array;
  imageEmbedsDims?: number[];
  /** A depth model: `predicted_depth` (B, H, W) at the input's size. */
  predictedDepth?: Float32Array;
  predictedDepthDims?: number[];
}

export interface AttentionMap {
  /** Whose attention: the class token's in the last layer ("cls"), or for a model without one (SigLIP, SigLIP 2) its attention-pooling query's ("pool"). */
  source: 'cls' | 'pool';
  rows: number;
  cols: number;
  heads: number;
  /** heads x (rows * cols) */
  perHead: Float32Array;
  /** rows * cols, the mean over heads */
  mean: Float32Array;
  /**
   * With token merging: the merged token each patch is part of where the attention was taken
   * (patches of one token share a number; each then holds its token's attention over the
   * token's size). null without merging.
   */
  groups: Uint32Array | null;
}

/**
 * Token merging (ToMe): r of the most similar tokens merged in every encoder layer, between
 * attention and MLP (class, distillation and register tokens never; a layer at most half its
 * tokens). `decreasing`: 2r in the first layer down to 0 in the last. 0 merges nothing.
 */
export type Merge = number | { r: number; schedule?: 'constant' | 'decreasing' };

/** How tokens merge layer by layer for one grid. */
export interface MergePlan {
  r: number;
  schedule: 'constant' | 'decreasing';
  /** Each layer's tokens in, the tokens the schedule asked it to merge, and those it merged (capped at half). */
  layers: { tokens: number; asked: number; r: number }[];
  /** Tokens after the last layer. */
  tokensLeft: number;
}

export type ImageInput = HTMLImageElement | ImageBitmap | ImageData | HTMLCanvasElement | OffscreenCanvas | Blob | File;
export type Bytes = ArrayBuffer | ArrayBufferView | Blob | File;

export interface LoadProgress {
  file: string;
  loaded: number;
  total: number;
  cached: boolean;
}

export interface LoadOptions {
  /** Hub endpoint for hub ids (default https://huggingface.co). */
  endpoint?: string;
  revision?: string;
  onProgress?: (p: LoadProgress) => void;
  /** Keep downloads in the Cache API (default true). */
  cache?: boolean;
  /** Store weights and activations as f16 (f32 arithmetic): half the GPU memory; needs `adapterInfo.shaderF16`, else rejects with kind "unsupported_dtype". */
  f16?: boolean;
  /**
   * Run at this patch size instead of the checkpoint's own: the patch-embedding kernel is
   * PI-resized (FlexiViT) from the checkpoint's weights and the position embeddings follow the
   * new grid. Smaller patches: more tokens, finer detail, more time. A size the checkpoint cannot
   * take (0, larger than its image) rejects with kind "model".
   */
  patchSize?: number;
  /**
   * With an 8-bit checkpoint on the CPU backend: int8 x int8 arithmetic (the activations
   * quantized per token as each product runs). Faster, within the activations' rounding;
   * `model.info.arithmetic` says how many layers run it (4-bit and grouped weights, and WebGPU,
   * keep the weights dequantized).
   */
  int8?: boolean;
  /** Token merging for every call that does not give its own `merge`. */
  merge?: Merge;
}

/**
 * A NaFlex model's (SigLIP 2) patch budget for one call: the image keeps its aspect ratio at the
 * largest scale whose grid of 16-pixel patches fits `maxPatches` (fewer: faster and coarser).
 * Omitted: the checkpoint's `max_num_patches`. On another model it rejects with kind "input".
 */
export interface BudgetOptions {
  maxPatches?: number;
  /** Token merging for this call (default: the model's, from `load`). */
  merge?: Merge;
}

/** The grid an image runs on: the size it is resized to, its patch rows and columns, and its tokens (class token and registers included). */
export interface Grid {
  width: number;
  height: number;
  rows: number;
  cols: number;
  tokens: number;
  /** With token merging: its tokens layer by layer. */
  merge?: MergePlan;
}

export declare class Model {
  readonly info: ModelInfo;
  classify(image: ImageInput, options?: { topK?: number } & BudgetOptions): Promise<Prediction[]>;
  embed(image: ImageInput, options?: BudgetOptions): Promise<Float32Array>;
  attention(image: ImageInput, options?: BudgetOptions): Promise<AttentionMap>;
  /** The grid an image of `width` x `height` pixels gets (under `maxPatches` for a NaFlex model). */
  grid(width: number, height: number, options?: BudgetOptions): Grid;
  run(pixelValues: Float32Array, dims: [number, number, number, number], options?: { merge?: Merge }): Promise<RunOutput>;
  /** The depth of the image at its own size (a Depth Anything model; others reject with kind "input"). */
  depth(image: ImageInput): Promise<DepthMap>;
  dispose(): void;
}

export interface ClipInfo {
  source: string;
  family: 'clip' | 'siglip';
  /** A text tower alone (CLIPTextModel, CLIPTextModelWithProjection, SiglipTextModel): embedText only; embedImage and zeroShot reject with kind "input". */
  textOnly: boolean;
  /** Width of the shared image-text space. */
  projectionDim: number;
  /** The most tokens a text keeps (longer texts are cut, as the model's processor does). */
  maxTokens: number;
  /** exp(logit_scale): the temperature of zero-shot scores (null for a text tower alone). */
  logitScale: number | null;
  /** SigLIP's logit_bias (null for CLIP). */
  logitBias: number | null;
  /** How zero-shot scores are made: a softmax over the labels (CLIP) or each label's sigmoid (SigLIP); null for a text tower alone. */
  scores: 'softmax' | 'sigmoid' | null;
  /** A NaFlex checkpoint's (SigLIP 2) patch budget per image; null otherwise and for a text tower alone. */
  maxPatches: number | null;
}

export interface LabelScore {
  label: string;
  /** Softmax probability over the labels (CLIP), or this label's own sigmoid probability (SigLIP). */
  score: number;
  /** logitScale times the cosine similarity, plus logitBias for SigLIP (logits_per_image). */
  logit: number;
}

/** CLIP or SigLIP in its shared image-text space (from `Tessera.loadClip`, in the `tessera-vit/text` build). */
export declare class ClipModel {
  readonly info: ClipInfo;
  /** Unit-length text embeddings; `truncated[i]`: text i was cut to `info.maxTokens` tokens. */
  embedText(texts: string | string[]): Promise<{ embeddings: Float32Array[]; truncated: boolean[] }>;
  /** The unit-length embedding of an image (dot products with text embeddings are similarities). */
  embedImage(image: ImageInput, options?: BudgetOptions): Promise<Float32Array>;
  /** Zero-shot classification into `labels` (each put into `template`, default "a photo of a {}."), best first. */
  zeroShot(image: ImageInput, labels: string[], options?: { template?: string } & BudgetOptions): Promise<LabelScore[]>;
  /** The image tower's attention over the patch grid (SigLIP: its pooling head's). */
  attention(image: ImageInput, options?: BudgetOptions): Promise<AttentionMap>;
  /** The grid the image tower runs an image of `width` x `height` pixels on. */
  grid(width: number, height: number, options?: BudgetOptions): Grid;
  dispose(): void;
}

export declare class Tessera {
  readonly adapterInfo: AdapterInfo;
  /** Where models run: WebGPU, or the CPU backend (WebAssembly SIMD). */
  readonly device: 'webgpu' | 'cpu';
  /** Why that device was chosen (e.g. "the only WebGPU adapter is a software fallback; the CPU backend is faster"), and on the CPU why so many threads. */
  readonly deviceReason: string;
  /** On the CPU backend, why it runs on `adapterInfo.threads` threads (e.g. "1 thread: the page is not cross-origin isolated (COOP/COEP), which worker threads need"); null on WebGPU. */
  readonly threadsReason: string | null;
  /** Stops the CPU backend's worker threads, if any (their models reject afterwards). */
  close(): void;
  /** Terminates CPU worker thread `rank` as a crash would (to test recovery). */
  terminateWorker(rank: number): void;
  /** True once the GPU device was lost: create a new engine and load the model again. */
  readonly lost: boolean;
  /** Destroys the device as a GPU reset would (to test recovery). */
  destroy(): void;
  /** Memory held by the engine on its device (`deviceBytes`; `gpuBytes` is the same number), the budget (null: none), and the wasm heap, in bytes. */
  readonly memory: { deviceBytes: number; gpuBytes: number; budget: number | null; wasmBytes: number; pageWasmBytes: number; workerWasmBytes: number[]; exchangeBytes: number };
  /** `memoryBudget`: most GPU memory (bytes) the engine may hold; beyond it loads reject with kind "out_of_memory" and large batches run in chunks. */
  /** What the autotuner did: shapes timed, choices reused, and per shape the kernel chosen with what each candidate took (ms per dispatch). */
  readonly tuning: { enabled: boolean; measured: number; reused: number; choices: Record<string, { choice: string; ms: Record<string, number> }> };
  /**
   * `device`: "auto" (default: WebGPU on a real GPU adapter, else the CPU backend, also where the browser has no WebGPU or only a software adapter),
   * "webgpu" (rejects with kind "no_webgpu" where there is none) or "cpu".
   * `tune`: time the candidate GPU kernels of each new shape on first use and keep the fastest (needs timestamp queries).
   */
  /**
   * `relaxedSimd` (default true): load the relaxed-SIMD build of the wasm where the browser validates
   * relaxed SIMD (the simd128 build otherwise, or with `false`). The first `create` of a page decides.
   * `threads` (1 to 64): the CPU backend's worker threads; by default min(4, ceil(cores / 2)) on a
   * cross-origin isolated page, else 1 (threads need isolation). `worker`: run even one thread in a worker.
   */
  static create(options?: { wasmUrl?: string | URL; memoryBudget?: number; tune?: boolean; device?: 'auto' | 'webgpu' | 'cpu'; relaxedSimd?: boolean; threads?: number; worker?: boolean }): Promise<Tessera>;
  load(source: string | { config: Bytes; weights: Bytes; preprocessor?: Bytes; name?: string }, options?: LoadOptions): Promise<Model>;
  /**
   * A CLIPModel or SiglipModel checkpoint with its tokenizer.json (SigLIP: or its SentencePiece
   * spiece.model) by hub id, base URL, or files; tokenizer_config.json, where there is one, says
   * which side texts are padded on. Only in the
   * text build (`import { Tessera } from 'tessera-vit/text'`); the main build rejects with kind "input".
   */
  loadClip(
    source: string | { config: Bytes; weights: Bytes; preprocessor?: Bytes; tokenizer?: Bytes; tokenizerConfig?: Bytes; sentencepiece?: Bytes; name?: string },
    options?: Omit<LoadOptions, 'f16' | 'patchSize'>,
  ): Promise<ClipModel>;
}

export default Tessera;
