// The package's API over one build of the engine (the tessera Rust crate compiled to wasm32):
// chooses the device and turns browser inputs (URLs, hub ids, Blobs, images) into bytes for it.
// index.js binds it to the main build, text.js to the build with text towers (CLIP).
// `relaxedUrl`: the same build compiled with relaxed SIMD (fused multiply-adds in the CPU
// backend's kernels), loaded where the browser validates relaxed SIMD.
// `glueUrl` / `wasmUrl`: the build's wasm-bindgen glue and its simd128 wasm (worker threads load
// the same glue, with the module compiled here).
import { WorkerEngine } from './threads.js';

export function makeApi(init, Engine, relaxedUrl, glueUrl, defaultWasmUrl, initSync) {
  
  let wasmReady = null;
  let wasmExports = null;
  let wasmModule = null;
  let compiled = null;

  /** The module at `url`, compiled (streaming where the server sends application/wasm). */
  async function compile(url) {
    try {
      return await WebAssembly.compileStreaming(fetch(url));
    } catch {
      const r = await fetch(url);
      if (!r.ok) throw new Error(`${url}: the server answered ${r.status} ${r.statusText}`.trim());
      return WebAssembly.compile(await r.arrayBuffer());
    }
  }
  
  /** The build's module, compiled once per page (the first call's URL decides). */
  function compileWasm(wasmUrl) {
    if (!compiled) {
      compiled = compile(wasmUrl ?? defaultWasmUrl).then(
        (module) => (wasmModule = module),
        (e) => {
          compiled = null;
          throw e;
        },
      );
    }
    return compiled;
  }

  /**
   * The page's own instance, made where the page runs models itself; a page whose models run on
   * worker threads makes it only if it asks for a grid (which reads a checkpoint's header here).
   */
  function pageInstance() {
    if (!wasmExports) wasmExports = initSync({ module: wasmModule });
    return wasmExports;
  }

  function initWasm(wasmUrl) {
    if (!wasmReady) {
      wasmReady = compileWasm(wasmUrl).then((module) => init({ module_or_path: module })).then(
        (exports) => {
          wasmExports = exports;
          return exports;
        },
        (e) => {
          wasmReady = null;
          throw e;
        },
      );
    }
    return wasmReady;
  }
  
  /**
   * Whether this browser runs WebAssembly relaxed SIMD: validates a module whose one function is
   * `f32x4.relaxed_madd` over three constants.
   */
  function relaxedSimdSupported() {
    if (typeof WebAssembly === 'undefined' || typeof WebAssembly.validate !== 'function') return false;
    const c = [0xfd, 0x0c, ...new Array(16).fill(0)];
    const body = [0x00, ...c, ...c, ...c, 0xfd, 0x85, 0x02, 0x0b];
    const bytes = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
      0x03, 0x02, 0x01, 0x00, // one function of that type
      0x0a, body.length + 2, 0x01, body.length, ...body,
    ]);
    try {
      return WebAssembly.validate(bytes);
    } catch {
      return false;
    }
  }

  /** Errors from the engine carry a stable `kind` (e.g. "model", "image", "gpu"). */
  function wrap(e) {
    if (e instanceof Error && typeof e.kind === 'string') return e;
    const message = e && e.message ? e.message : String(e);
    const m = /^\[(\w+)\] /.exec(message);
    const err = new Error(m ? message.slice(m[0].length) : message);
    err.kind = m ? m[1] : 'unknown';
    return err;
  }
  
  /**
   * `f()`, its error wrapped. With `owner` (the `Tessera` whose engine runs it) on WebGPU, the
   * call also rejects with a `device_lost` error as soon as that device is lost: a call in flight
   * on a lost device may never settle.
   */
  async function call(f, owner) {
    const engine = owner && owner.device === 'webgpu' ? owner._engine : null;
    const run = (async () => {
      try {
        return await f();
      } catch (e) {
        throw wrap(e);
      }
    })();
    if (!engine || typeof engine.isLost !== 'function') return run;
    run.catch(() => {});
    let timer;
    const lost = new Promise((_, reject) => {
      const check = () => {
        if (!engine.isLost()) return;
        const err = new Error('the GPU device was lost during the call: create a new engine and load the model again');
        err.kind = 'device_lost';
        reject(err);
      };
      timer = setInterval(check, 100);
    });
    try {
      return await Promise.race([run, lost]);
    } finally {
      clearInterval(timer);
    }
  }
  
  function callSync(f) {
    try {
      return f();
    } catch (e) {
      throw wrap(e);
    }
  }
  
  /** A `maxPatches` option: undefined (the model's own budget) or a whole number of patches. */
  function budget(maxPatches) {
    if (maxPatches === undefined || maxPatches === null) return undefined;
    if (!Number.isInteger(maxPatches) || maxPatches < 1 || maxPatches > 0xffffffff) {
      const err = new Error(`maxPatches must be a whole number of patches, 1 or more (got ${maxPatches})`);
      err.kind = 'input';
      throw err;
    }
    return maxPatches;
  }
  
  /**
   * A `merge` option (token merging, ToMe): undefined (the model's own), a whole number r of
   * tokens merged per layer (0: none), or `{ r, schedule: 'constant' | 'decreasing' }`; as the
   * engine takes it, `"r"` or `"r:schedule"`.
   */
  function mergeArg(merge) {
    if (merge === undefined || merge === null) return undefined;
    const bad = () => {
      const err = new Error(`merge must be a whole number of tokens per layer, 0 or more, or { r, schedule: 'constant' | 'decreasing' } (got ${JSON.stringify(merge)})`);
      err.kind = 'input';
      return err;
    };
    const r = typeof merge === 'object' ? merge.r : merge;
    const schedule = typeof merge === 'object' ? merge.schedule ?? 'constant' : 'constant';
    if (!Number.isInteger(r) || r < 0 || r > 0xffffffff || !['constant', 'decreasing'].includes(schedule)) throw bad();
    return `${r}:${schedule}`;
  }

  /**
   * How many CPU threads: `threads` as asked (a whole number, 1 to 64), or by default what ONNX
   * Runtime Web takes, min(4, ceil(logical cores / 2)), where the page is cross-origin isolated
   * (worker threads share memory only there) and 1 elsewhere. Returns [threads, reason].
   */
  function threadPlan(threads) {
    if (threads !== undefined && threads !== null && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
      const err = new Error(`threads must be a whole number from 1 to 64 (got ${threads})`);
      err.kind = 'input';
      throw err;
    }
    const isolated = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
    const cores = (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 1;
    if (threads === undefined || threads === null) {
      if (!isolated) return [1, '1 thread: the page is not cross-origin isolated (COOP/COEP), which worker threads need'];
      const n = Math.min(4, Math.ceil(cores / 2));
      return [n, `${n} thread${n === 1 ? '' : 's'}: min(4, half of the ${cores} logical cores), the page being cross-origin isolated`];
    }
    if (threads > 1 && !isolated) return [1, `1 thread: ${threads} were asked, but the page is not cross-origin isolated (COOP/COEP), which worker threads need`];
    return [threads, `${threads} thread${threads === 1 ? '' : 's'}: as asked`];
  }

  /** An engine on the page's own thread: the page's wasm instance (made now, from `url`), `device`. */
  async function pageEngine(url, device, memoryBudget, tune) {
    await initWasm(url);
    return call(() => Engine.create(device, memoryBudget, tune));
  }

  /** A model's wasm model, loaded again on the engine's fallback where its worker threads died. */
  async function live(model) {
    if (model._reload && model._inner._engine?.dead) {
      const old = model._inner;
      model._inner = await model._reload();
      model.info = JSON.parse(model._inner.info());
      old.dispose();
    }
    return model._inner;
  }

  /** A wasm model's attention map of an image: `{source, rows, cols, heads, perHead, mean}`. */
  async function attentionOf(model, image, maxPatches, merge) {
    const a = await imageArgs(image);
    const r = JSON.parse(await call(async () => (await live(model)).attention(a.bytes, a.rgba, a.width, a.height, a.name, budget(maxPatches), model._mergeArg(merge)), model._tessera));
    return { ...r, perHead: Float32Array.from(r.perHead), mean: Float32Array.from(r.mean), groups: r.groups.length ? Uint32Array.from(r.groups) : null };
  }

  /** The grid a wasm model runs an image of `width` x `height` pixels on (and with merging, its tokens per layer). */
  function gridOf(model, width, height, maxPatches, merge) {
    return JSON.parse(callSync(() => model._inner.grid(width, height, budget(maxPatches), model._mergeArg(merge))));
  }

  /** A model's `merge` of a call: the call's, else the one it was loaded with. */
  function modelMergeArg(merge) {
    return mergeArg(merge ?? this._merge);
  }
  
  const CACHE_NAME = 'tessera-vit-v1';
  
  async function fetchBytes(url, { onProgress, cache, optional } = {}) {
    let response = null;
    let store = null;
    if (cache && typeof caches !== 'undefined') {
      try {
        store = await caches.open(CACHE_NAME);
        response = await store.match(url);
      } catch {
        store = null;
      }
    }
    const cached = !!response;
    if (!response) {
      try {
        response = await fetch(url);
      } catch (e) {
        const err = new Error(`${url}: the download failed (${e.message || e}); check the network or the address`);
        err.kind = 'network';
        throw err;
      }
    }
    if (!response.ok) {
      if (optional && response.status === 404) return null;
      const err = new Error(`${url}: the server answered ${response.status} ${response.statusText}`.trim());
      err.kind = response.status === 404 ? 'not_found' : 'network';
      throw err;
    }
    const total = Number(response.headers.get('content-length')) || 0;
    const keep = store && !cached ? response.clone() : null;
    let bytes;
    if (response.body && onProgress) {
      const reader = response.body.getReader();
      const chunks = [];
      let loaded = 0;
      for (;;) {
        let part;
        try {
          part = await reader.read();
        } catch (e) {
          const err = new Error(`${url}: the download broke off after ${loaded} bytes (${e.message || e})`);
          err.kind = 'network';
          throw err;
        }
        if (part.done) break;
        chunks.push(part.value);
        loaded += part.value.length;
        onProgress({ file: url.split('/').pop(), loaded, total, cached });
      }
      bytes = new Uint8Array(loaded);
      let at = 0;
      for (const c of chunks) {
        bytes.set(c, at);
        at += c.length;
      }
    } else {
      bytes = new Uint8Array(await response.arrayBuffer());
    }
    if (keep) {
      try {
        await store.put(url, keep);
      } catch {
        // A full or unavailable cache only costs a download next time.
      }
    }
    return bytes;
  }
  
  async function toBytes(x, what) {
    if (x == null) return null;
    if (x instanceof Uint8Array) return x;
    if (x instanceof ArrayBuffer) return new Uint8Array(x);
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    if (typeof Blob !== 'undefined' && x instanceof Blob) return new Uint8Array(await x.arrayBuffer());
    const err = new Error(`${what}: expected an ArrayBuffer, typed array, Blob or File`);
    err.kind = 'input';
    throw err;
  }
  
  /** Image-like input to the engine's arguments: encoded bytes (decoded in Rust, as natively) or RGBA. */
  async function imageArgs(image) {
    if (typeof Blob !== 'undefined' && image instanceof Blob) {
      return { bytes: new Uint8Array(await image.arrayBuffer()), rgba: undefined, width: 0, height: 0, name: image.name || 'image' };
    }
    if (typeof ImageData !== 'undefined' && image instanceof ImageData) {
      return { bytes: undefined, rgba: new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), width: image.width, height: image.height, name: 'ImageData' };
    }
    if (image && (image.naturalWidth || image.width)) {
      if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !image.complete) {
        await image.decode();
      }
      const width = image.naturalWidth || image.videoWidth || image.width;
      const height = image.naturalHeight || image.videoHeight || image.height;
      const canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(width, height) : Object.assign(document.createElement('canvas'), { width, height });
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(image, 0, 0);
      const data = ctx.getImageData(0, 0, width, height);
      return { bytes: undefined, rgba: new Uint8Array(data.data.buffer), width, height, name: image.src || 'image' };
    }
    const err = new Error('expected an HTMLImageElement, ImageBitmap, ImageData, canvas, Blob or File');
    err.kind = 'input';
    throw err;
  }
  
  class Model {
    constructor(inner, merge) {
      this._inner = inner;
      this._merge = merge;
      this._mergeArg = modelMergeArg;
      this.info = JSON.parse(inner.info());
    }

    /**
     * Top-k classes: `[{index, label, score}]`, best first. `maxPatches`: a NaFlex model's patch
     * budget; `merge`: token merging for this call (see `load`).
     */
    async classify(image, { topK = 5, maxPatches, merge } = {}) {
      const a = await imageArgs(image);
      return JSON.parse(await call(async () => (await live(this)).classify(a.bytes, a.rgba, a.width, a.height, a.name, topK, budget(maxPatches), this._mergeArg(merge)), this._tessera));
    }

    /** The image's embedding (pooler output, else the CLS token). */
    async embed(image, { maxPatches, merge } = {}) {
      const a = await imageArgs(image);
      return call(async () => (await live(this)).embed(a.bytes, a.rgba, a.width, a.height, a.name, budget(maxPatches), this._mergeArg(merge)), this._tessera);
    }

    /**
     * Attention over the patch grid: `{source, rows, cols, heads, perHead, mean, groups}` (the
     * class token's, or for SigLIP the pooling head's). With token merging, each patch holds its
     * merged token's attention over the token's size, and `groups[i]` numbers the merged token
     * patch i is part of (null without merging).
     */
    async attention(image, { maxPatches, merge } = {}) {
      return attentionOf(this, image, maxPatches, merge);
    }

    /**
     * The grid an image of `width` x `height` pixels runs on: `{width, height, rows, cols,
     * tokens}` (the size it is resized to); with token merging also `merge: {r, schedule,
     * layers: [{tokens, asked, r}], tokensLeft}`.
     */
    grid(width, height, { maxPatches, merge } = {}) {
      return gridOf(this, width, height, maxPatches, merge);
    }
  
    /**
     * The depth of the image at its own size (a Depth Anything model): `{depth, width, height,
     * modelWidth, modelHeight}`, `depth` a Float32Array of height x width values row by row
     * (relative: larger is nearer; metric: meters). `paintDepth` draws it.
     */
    async depth(image) {
      const a = await imageArgs(image);
      return call(async () => (await live(this)).depth(a.bytes, a.rgba, a.width, a.height, a.name), this._tessera);
    }

    /** `pixelValues` (B, C, H, W) as `model(pixel_values=...)` in transformers; `merge` as for `classify`. */
    async run(pixelValues, dims, { merge } = {}) {
      if (!(pixelValues instanceof Float32Array)) {
        const err = new Error('pixelValues must be a Float32Array');
        err.kind = 'input';
        throw err;
      }
      return call(async () => (await live(this)).run(pixelValues, Uint32Array.from(dims), this._mergeArg(merge)), this._tessera);
    }
  
    /** Frees the GPU memory; later calls reject. */
    dispose() {
      if (this._inner) {
        this._inner.dispose();
        this._inner.free();
        this._inner = { info: () => '{}', classify: disposed, embed: disposed, attention: disposed, run: disposed, grid: disposedSync, dispose() {}, free() {} };
      }
    }
  }
  
  function disposedError() {
    const err = new Error('this model was disposed');
    err.kind = 'disposed';
    return err;
  }
  
  function disposed() {
    return Promise.reject(disposedError());
  }
  
  function disposedSync() {
    throw disposedError();
  }
  
  /**
   * A checkpoint's weights once more, to load a model again where its worker threads died: from
   * the Cache API (or the network) for a hub id or URL, else the caller's own bytes (no copy of
   * the weights is kept for it).
   */
  function weightsAgain(source, { endpoint, revision, onProgress, cache }) {
    if (typeof source === 'string') return fetchBytes(`${filesUrl(source, endpoint, revision)}/model.safetensors`, { cache, onProgress });
    return toBytes(source.weights, 'weights');
  }

  const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

  /** Where a checkpoint's files are: a hub id's resolve URL, or the given base URL. */
  function filesUrl(source, endpoint, revision) {
    return HUB_ID.test(source) ? `${endpoint.replace(/\/$/, '')}/${source}/resolve/${revision}` : source.replace(/\/$/, '');
  }
  
  /**
   * The device `auto` picks: WebGPU on a real adapter, else the CPU backend (no WebGPU, no adapter,
   * or only a software fallback adapter such as SwiftShader, slower than WebAssembly on the same
   * cores). Returns [device, reason].
   */
  async function chooseDevice() {
    if (typeof navigator === 'undefined' || !navigator.gpu) return ['cpu', 'this browser has no WebGPU'];
    let adapter = null;
    try {
      adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    } catch {
      adapter = null;
    }
    if (!adapter) return ['cpu', 'WebGPU offers no adapter here (GPU blocklisted or disabled)'];
    const fallback = adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
    if (fallback) return ['cpu', 'the only WebGPU adapter is a software fallback; the CPU backend is faster'];
    return ['webgpu', 'a WebGPU adapter is available'];
  }
  
  class Tessera {
    constructor(engine, reason, threadsReason, workerOptions) {
      this._engine = engine;
      this._workerOptions = workerOptions;
      this._deviceChoice = reason;
      this.adapterInfo = JSON.parse(engine.adapterInfo());
      /** `"webgpu"` or `"cpu"`: where models run. */
      this.device = engine.device();
      /** Why the CPU backend runs on `adapterInfo.threads` threads (null on WebGPU). */
      this.threadsReason = threadsReason ?? null;
      /** Why this device was chosen (on the CPU, and why on so many threads). */
      this.deviceReason = threadsReason ? `${reason}; ${threadsReason}` : reason;
    }

    /** The engine, or where its worker threads died, the one-thread engine that replaces it. */
    async _live() {
      if (!this._engine.dead) return this._engine;
      if (!this._recovering) {
        this._recovering = (async () => {
          const reason = this._engine.dead;
          let engine;
          try {
            engine = await WorkerEngine.start({ ...this._workerOptions, ranks: 1 });
          } catch {
            engine = await pageEngine(undefined, 'cpu', this._workerOptions.memoryBudget, false);
          }
          this._engine = engine;
          this.adapterInfo = JSON.parse(engine.adapterInfo());
          this.threadsReason = `1 thread: ${reason}, so the models were loaded again on one thread`;
          this.deviceReason = `${this._deviceChoice}; ${this.threadsReason}`;
          this._recovering = null;
          return engine;
        })();
      }
      return this._recovering;
    }

    /** Terminates CPU worker thread `rank` as a crash would (to test recovery). */
    terminateWorker(rank) {
      if (typeof this._engine.terminateWorker !== 'function') throw wrap(new Error('[input] this engine runs on no worker threads'));
      this._engine.terminateWorker(rank);
    }
  
    /** Whether the GPU device was lost (never on the CPU); then create a new engine and load models again. */
    get lost() {
      return this._engine.isLost();
    }
  
    /** Destroys the device as a GPU reset would (to test recovery). */
    destroy() {
      this._engine.destroy();
    }
  
    /**
     * What the autotuner did: `{ enabled, measured, reused, choices }` (shapes timed, choices
     * reused, and per shape the kernel chosen with each candidate's ms per dispatch).
     */
    get tuning() {
      return JSON.parse(this._engine.tuningStats());
    }
  
    /**
     * Memory the engine holds on its device (weights, activations and staging buffers of live
     * models: GPU memory on WebGPU, wasm heap on the CPU backend), the budget if one was set, and
     * the size of the wasm heap, in bytes.
     */
    get memory() {
      const page = wasmExports?.memory?.buffer.byteLength ?? 0;
      const workers = typeof this._engine.wasmBytes === 'function' ? this._engine.wasmBytes() : [];
      return {
        gpuBytes: this._engine.memoryInUse(),
        deviceBytes: this._engine.memoryInUse(),
        budget: this._engine.memoryBudget() ?? null,
        wasmBytes: page + workers.reduce((a, b) => a + b, 0),
        pageWasmBytes: page,
        workerWasmBytes: workers,
        exchangeBytes: typeof this._engine.boardBytes === 'function' ? this._engine.boardBytes() : 0,
      };
    }
  
    /**
     * Opens a device: `device: "auto"` (the default) takes WebGPU on a real GPU adapter and the CPU
     * backend (WebAssembly SIMD) otherwise, including where the browser has no WebGPU or only a
     * software adapter; `"webgpu"` insists on WebGPU (rejecting with kind `no_webgpu` where there is
     * none) and takes a software adapter too; `"cpu"` takes the CPU backend. `engine.device` and
     * `engine.deviceReason` say what was chosen and why. `memoryBudget` (bytes) bounds the memory
     * the engine may hold: a model or batch beyond it is refused (`kind: "out_of_memory"`) or run in
     * smaller batches, before anything is allocated. `tune: true` times the candidate GPU kernels of
     * each new shape on first use and keeps the fastest, where the browser grants timestamp queries.
     * The CPU backend's wasm is the relaxed-SIMD build where the browser validates relaxed SIMD
     * (`relaxedSimd: false` keeps the simd128 build; `wasmUrl` names a build of your own); the
     * first `create` of a page decides, and `adapterInfo.isa` says which ("simd128+relaxed").
     */
    static async create({ wasmUrl, memoryBudget, tune = false, device = 'auto', relaxedSimd = true, threads, worker = false } = {}) {
      let reason = 'asked for';
      if (device === 'auto') {
        [device, reason] = await chooseDevice();
      } else if (device === 'webgpu' && (typeof navigator === 'undefined' || !navigator.gpu)) {
        const err = new Error('WebGPU is not available here. Use a recent Chrome or Edge (113+), Safari 26+, or Firefox with WebGPU enabled, on a page served over https or localhost; or device: "cpu".');
        err.kind = 'no_webgpu';
        throw err;
      } else if (device !== 'webgpu' && device !== 'cpu') {
        const err = new Error(`device "${device}": use "auto", "webgpu" or "cpu"`);
        err.kind = 'input';
        throw err;
      }
      const [n, why] = threadPlan(threads);
      const url = wasmUrl ?? (relaxedSimd && relaxedUrl && relaxedSimdSupported() ? relaxedUrl : undefined);
      if (device === 'cpu' && (n > 1 || worker)) {
        await compileWasm(url);
        const gridOf = (...args) => {
          pageInstance();
          return Engine.gridOf(...args);
        };
        const opts = { glue: glueUrl, module: wasmModule, memoryBudget: memoryBudget ?? undefined, gridOf };
        try {
          return new Tessera(await WorkerEngine.start({ ...opts, ranks: n }), reason, why, opts);
        } catch (e) {
          // No workers here (or they could not start): one thread on this one, with the reason.
          const fallback = `1 thread: ${n} worker thread${n === 1 ? '' : 's'} could not start (${e.message || e})`;
          return new Tessera(await pageEngine(url, 'cpu', memoryBudget ?? undefined, false), reason, fallback);
        }
      }
      return new Tessera(await pageEngine(url, device, memoryBudget ?? undefined, tune), reason, device === 'cpu' ? why : null);
    }

    /** Stops the engine's worker threads, if it has any (models loaded on it reject afterwards). */
    close() {
      if (typeof this._engine.close === 'function') this._engine.close();
    }
  
    /**
     * Loads a checkpoint: a hub id (`"facebook/deit-tiny-patch16-224"`), a base URL serving
     * config.json, model.safetensors and preprocessor_config.json, or `{config, weights,
     * preprocessor}` as ArrayBuffer / typed array / Blob / File.
     */
    async load(source, { endpoint = 'https://huggingface.co', revision = 'main', onProgress, cache = true, f16 = false, patchSize, int8 = false, merge } = {}) {
      if (patchSize !== undefined && patchSize !== null && !(Number.isInteger(patchSize) && patchSize >= 0 && patchSize <= 0xffffffff)) {
        const err = new Error(`patchSize ${patchSize}: a whole number of pixels`);
        err.kind = 'input';
        throw err;
      }
      mergeArg(merge);
      const { name, config, weights, preprocessor } = await this._modelFiles(source, { endpoint, revision, onProgress, cache });
      const loadOn = (engine, w) => call(() => engine.loadModel(name, config, w, preprocessor ?? undefined, f16, patchSize ?? undefined, !!int8), this);
      const model = new Model(await loadOn(await this._live(), weights), merge);
      model._tessera = this;
      if (this._workerOptions) model._reload = async () => loadOn(await this._live(), await weightsAgain(source, { endpoint, revision, onProgress, cache }));
      return model;
    }

    /** A checkpoint's files: fetched (a hub id or URL), or the caller's, as bytes. */
    async _modelFiles(source, { endpoint, revision, onProgress, cache }) {
      let name;
      let config;
      let weights;
      let preprocessor;
      if (typeof source === 'string') {
        const base = filesUrl(source, endpoint, revision);
        name = source;
        config = await fetchBytes(`${base}/config.json`, { cache, onProgress });
        weights = await fetchBytes(`${base}/model.safetensors`, { cache, onProgress });
        preprocessor = await fetchBytes(`${base}/preprocessor_config.json`, { cache, onProgress, optional: true });
      } else if (source && typeof source === 'object') {
        name = source.name || 'files';
        if (!source.config || !source.weights) {
          const err = new Error(`${name}: a checkpoint needs config.json and model.safetensors`);
          err.kind = 'model';
          throw err;
        }
        config = await toBytes(source.config, 'config');
        weights = await toBytes(source.weights, 'weights');
        preprocessor = await toBytes(source.preprocessor, 'preprocessor');
      } else {
        const err = new Error('load() takes a hub id, a URL, or {config, weights, preprocessor}');
        err.kind = 'input';
        throw err;
      }
      return { name, config, weights, preprocessor };
    }
  
    /**
     * Loads a CLIPModel or SiglipModel checkpoint (hub id, base URL or `{config, weights,
     * preprocessor, tokenizer, tokenizerConfig, sentencepiece}`) with its tokenizer.json (SigLIP:
     * or its spiece.model), for text embeddings and
     * zero-shot classification (CLIP: softmax over the labels; SigLIP: a sigmoid per label). Needs
     * the text build: `import { Tessera } from 'tessera-vit/text'`.
     */
    async loadClip(source, { endpoint = 'https://huggingface.co', revision = 'main', onProgress, cache = true, merge } = {}) {
      mergeArg(merge);
      if (typeof this._engine.loadClip !== 'function') {
        const err = new Error("CLIP's text tower needs the text build: import { Tessera } from 'tessera-vit/text'");
        err.kind = 'input';
        throw err;
      }
      let name;
      let files;
      if (typeof source === 'string') {
        const base = filesUrl(source, endpoint, revision);
        name = source;
        files = {
          config: await fetchBytes(`${base}/config.json`, { cache, onProgress }),
          weights: await fetchBytes(`${base}/model.safetensors`, { cache, onProgress }),
          preprocessor: await fetchBytes(`${base}/preprocessor_config.json`, { cache, onProgress, optional: true }),
          tokenizer: await fetchBytes(`${base}/tokenizer.json`, { cache, onProgress, optional: true }),
          tokenizerConfig: await fetchBytes(`${base}/tokenizer_config.json`, { cache, onProgress, optional: true }),
        };
        // SigLIP's own checkpoints ship a SentencePiece model instead of tokenizer.json.
        if (!files.tokenizer) files.sentencepiece = await fetchBytes(`${base}/spiece.model`, { cache, onProgress, optional: true });
      } else if (source && typeof source === 'object') {
        name = source.name || 'files';
        files = {
          config: await toBytes(source.config, 'config'),
          weights: await toBytes(source.weights, 'weights'),
          preprocessor: await toBytes(source.preprocessor, 'preprocessor'),
          tokenizer: await toBytes(source.tokenizer, 'tokenizer'),
          tokenizerConfig: await toBytes(source.tokenizerConfig, 'tokenizerConfig'),
          sentencepiece: await toBytes(source.sentencepiece, 'sentencepiece'),
        };
      } else {
        const err = new Error('loadClip() takes a hub id, a URL, or {config, weights, preprocessor, tokenizer}');
        err.kind = 'input';
        throw err;
      }
      const { config, weights, preprocessor, tokenizer, tokenizerConfig, sentencepiece } = files;
      const loadOn = (engine, w) => call(() => engine.loadClip(name, config, w, preprocessor ?? undefined, tokenizer ?? undefined, tokenizerConfig ?? undefined, sentencepiece ?? undefined), this);
      const model = new ClipModel(await loadOn(await this._live(), weights), merge);
      model._tessera = this;
      if (this._workerOptions) model._reload = async () => loadOn(await this._live(), await weightsAgain(source, { endpoint, revision, onProgress, cache }));
      return model;
    }
  }

  /** CLIP in the shared image-text space (the `tessera-vit/text` build). */
  class ClipModel {
    constructor(inner, merge) {
      this._inner = inner;
      this._merge = merge;
      this._mergeArg = modelMergeArg;
      this.info = JSON.parse(inner.info());
    }
  
    /** Unit-length embeddings of `texts` (one Float32Array each); `truncated[i]` says text i was cut to the model's tokens. */
    async embedText(texts) {
      const list = typeof texts === 'string' ? [texts] : Array.from(texts ?? []);
      const [flat, truncated] = await call(async () => (await live(this)).embedText(list), this._tessera);
      const p = this.info.projectionDim;
      const embeddings = list.map((_, i) => flat.slice(i * p, (i + 1) * p));
      return { embeddings, truncated };
    }
  
    /** The unit-length embedding of an image. `maxPatches`: a NaFlex model's patch budget. */
    async embedImage(image, { maxPatches, merge } = {}) {
      const a = await imageArgs(image);
      return call(async () => (await live(this)).embedImage(a.bytes, a.rgba, a.width, a.height, a.name, budget(maxPatches), this._mergeArg(merge)), this._tessera);
    }
  
    /** Zero-shot classification: `[{label, score, logit}]`, best first; `template` puts each label in a prompt (`{}` marks it). */
    async zeroShot(image, labels, { template = 'a photo of a {}.', maxPatches, merge } = {}) {
      const a = await imageArgs(image);
      return JSON.parse(await call(async () => (await live(this)).zeroShot(a.bytes, a.rgba, a.width, a.height, a.name, Array.from(labels ?? []), template, budget(maxPatches), this._mergeArg(merge)), this._tessera));
    }

    /** The image tower's attention over the patch grid, as `Model.attention`. */
    async attention(image, { maxPatches, merge } = {}) {
      return attentionOf(this, image, maxPatches, merge);
    }

    /** The grid the image tower runs an image of `width` x `height` pixels on, as `Model.grid`. */
    grid(width, height, { maxPatches, merge } = {}) {
      return gridOf(this, width, height, maxPatches, merge);
    }
  
    /** Frees the model's memory; later calls reject. */
    dispose() {
      if (this._inner) {
        this._inner.dispose();
        this._inner.free();
        this._inner = { info: () => '{}', embedText: disposed, embedImage: disposed, zeroShot: disposed, attention: disposed, grid: disposedSync, dispose() {}, free() {} };
      }
    }
  }
  
  return { Tessera, Model, ClipModel };
}

/** Colour stops at 0, 1/4, .., 1 of the maps `paintDepth` draws with. */
const DEPTH_COLORS = {
  inferno: [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
  viridis: [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
  gray: [[0, 0, 0], [64, 64, 64], [128, 128, 128], [191, 191, 191], [255, 255, 255]],
};

/**
 * Paints a depth map (`model.depth(image)`'s result) onto a canvas at the map's size, its range
 * stretched over the colour map (`inferno`, `viridis` or `gray`); returns `{min, max}`.
 */
export function paintDepth(canvas, { depth, width, height }, { colormap = 'inferno' } = {}) {
  const stops = DEPTH_COLORS[colormap];
  if (!stops) {
    const err = new Error(`unknown colormap "${colormap}" (inferno, viridis or gray)`);
    err.kind = 'input';
    throw err;
  }
  if (!(depth instanceof Float32Array) || depth.length !== width * height) {
    const err = new Error(`depth must be a Float32Array of width x height (${width} x ${height}) values`);
    err.kind = 'input';
    throw err;
  }
  let min = Infinity;
  let max = -Infinity;
  for (const v of depth) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max > min ? max - min : 1;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(width, height);
  for (let i = 0; i < depth.length; i++) {
    const x = Math.min(Math.max((depth[i] - min) / span, 0), 1) * 4;
    const k = Math.min(Math.floor(x), 3);
    const f = x - k;
    for (let c = 0; c < 3; c++) img.data[4 * i + c] = Math.round(stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f);
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return { min, max };
}

