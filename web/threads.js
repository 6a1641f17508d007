// The CPU backend in worker threads. Each worker (thread.js) runs its own instance of the
// engine's wasm: with several, each is one rank of a backend that splits every matrix product
// (by output columns, or the MLP's second along its depth) and every attention (by heads or query
// tokens) between them, each holding only its share of the weights, exchanging activations through a SharedArrayBuffer with Atomics barriers (the wasm
// standard library of stable Rust has no threads, so the workers share no heap); alone, it is the
// whole CPU backend, off the page's thread. The page's thread only coordinates: it sends every
// call to every worker, in one order, and answers with the first rank's result.
//
// A WorkerEngine has the interface of the wasm Engine the package wraps (adapterInfo, loadModel,
// loadClip, ...), and its models that of the wasm models (info, classify, embed, ...).

/** Bytes of the exchange buffer: 64 of control words, then two halves of 512 KiB (larger exchanges take several rounds). */
const BOARD_BYTES = 64 + 2 * (512 << 10);
/** How long starting a worker may take (fetching and compiling nothing: the module is sent). */
const START_MS = 60_000;

function threadError(message, kind = 'thread') {
  const err = new Error(message);
  err.kind = kind;
  return err;
}

/** A model's methods that run on the workers. */
const MODEL_CALLS = ['classify', 'embed', 'attention', 'run', 'depth'];
const CLIP_CALLS = ['embedText', 'embedImage', 'zeroShot', 'attention'];

export class WorkerEngine {
  /**
   * Starts `ranks` workers over the compiled `module` of the glue at `glue` (a URL). `gridOf`:
   * the page's `Engine.gridOf` (which reads only a checkpoint's header), called on a model's first
   * `grid`.
   */
  static async start({ ranks, glue, module, memoryBudget, gridOf }) {
    if (typeof Worker === 'undefined') throw threadError('this environment has no Web Workers');
    if (ranks > 1 && typeof SharedArrayBuffer === 'undefined') throw threadError('SharedArrayBuffer is not available (the page is not cross-origin isolated)');
    const board = ranks > 1 ? new SharedArrayBuffer(BOARD_BYTES) : null;
    const e = new WorkerEngine(ranks, board, gridOf);
    try {
      const ready = [];
      for (let rank = 0; rank < ranks; rank++) {
        // Written out in full so that bundlers find the worker and bundle it.
        const w = new Worker(new URL('./thread.js', import.meta.url), { type: 'module', name: `tessera-${rank}` });
        e._workers.push(w);
        ready.push(
          new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(threadError(`worker ${rank} did not start within ${START_MS / 1000} s`)), START_MS);
            w.onmessage = (m) => {
              if (m.data?.type !== 'ready') return;
              clearTimeout(timer);
              if (m.data.error) fail(threadError(`worker ${rank} could not start the engine: ${m.data.error}`));
              else ok(m.data);
            };
            w.onerror = (ev) => {
              clearTimeout(timer);
              fail(threadError(`worker ${rank} failed to start: ${ev.message || 'script error'}`));
            };
          }),
        );
        w.postMessage({ type: 'init', glue: String(glue), module, rank, ranks, board, memoryBudget });
      }
      const infos = await Promise.all(ready);
      e._info = { ...JSON.parse(infos[0].info), threads: ranks, worker: true };
      infos.forEach((r, i) => (e._memory[i] = r.memory));
    } catch (err) {
      e._terminate();
      throw err;
    }
    e._workers.forEach((w, rank) => {
      w.onmessage = (m) => e._reply(rank, m.data);
      w.onerror = (ev) => e._die(`worker thread ${rank} failed: ${ev.message || 'script error'}`);
      w.onmessageerror = () => e._die(`worker thread ${rank} sent a message that could not be read`);
    });
    return e;
  }

  constructor(ranks, board, gridOf) {
    this.ranks = ranks;
    this._board = board;
    this._gridOf = gridOf;
    this._workers = [];
    this._pending = new Map();
    this._next = 1;
    this._memory = new Array(ranks).fill({ wasmBytes: 0, inUse: 0 });
    this._dead = null;
    this.onDeath = null;
  }

  /** Why the group stopped (a worker died or was terminated), or null while it runs. */
  get dead() {
    return this._dead;
  }

  _reply(rank, d) {
    if (d?.memory) this._memory[rank] = d.memory;
    const p = this._pending.get(d?.id);
    if (!p) return;
    if (d.error !== undefined) p.errors[rank] = d.error;
    else if (rank === 0) p.value = d.value;
    else p.values[rank] = d.value;
    if (--p.left > 0) return;
    this._pending.delete(d.id);
    const err = p.errors.find((x) => x !== undefined);
    if (err !== undefined) p.fail(new Error(err));
    else p.ok(p.value, p.values);
  }

  /** Posts one message to every worker; resolves with rank 0's value (and every rank's). */
  _send(msg, transfer = []) {
    if (this._dead) return Promise.reject(threadError(`the CPU worker threads stopped: ${this._dead}`));
    const id = this._next++;
    return new Promise((ok, fail) => {
      this._pending.set(id, { left: this.ranks, value: undefined, values: [], errors: [], ok: (v, all) => ok({ value: v, all }), fail });
      this._workers.forEach((w) => w.postMessage({ ...msg, id }, transfer));
    });
  }

  _terminate() {
    for (const w of this._workers) w.terminate();
    if (this._board) {
      // Ranks still waiting at a barrier give up at once.
      const ctl = new Int32Array(this._board, 0, 16);
      Atomics.store(ctl, 2, 1);
      Atomics.notify(ctl, 1);
    }
  }

  /** A worker died: every call in flight rejects, the rest of the group stops. */
  _die(reason) {
    if (this._dead) return;
    this._dead = reason;
    this._terminate();
    for (const [, p] of this._pending) p.fail(threadError(`${reason}; the call was abandoned`));
    this._pending.clear();
    if (this.onDeath) this.onDeath(reason);
  }

  /** Terminates worker `rank` as a crash would (to test recovery). */
  terminateWorker(rank) {
    this._workers[rank]?.terminate();
    this._die(`worker thread ${rank} was terminated`);
  }

  /** Stops every worker. */
  close() {
    this._die('the engine was closed');
  }

  adapterInfo() {
    return JSON.stringify(this._info);
  }

  device() {
    return 'cpu';
  }

  memoryInUse() {
    return this._memory.reduce((a, m) => a + (m?.inUse ?? 0), 0);
  }

  /** Each worker's wasm heap, in bytes, as of its last answer. */
  wasmBytes() {
    return this._memory.map((m) => m?.wasmBytes ?? 0);
  }

  /** Bytes of the exchange buffer. */
  boardBytes() {
    return this._board ? this._board.byteLength : 0;
  }

  memoryBudget() {
    return undefined;
  }

  isLost() {
    return false;
  }

  destroy() {}

  tuningStats() {
    return JSON.stringify({ enabled: false, measured: 0, reused: 0, choices: {} });
  }

  /** The weights as every worker reads them: one shared copy (several workers), else a copy of its own. */
  _weights(weights) {
    if (this.ranks === 1) {
      const copy = weights.slice();
      return [copy, [copy.buffer]];
    }
    const shared = new Uint8Array(new SharedArrayBuffer(weights.byteLength));
    shared.set(weights);
    return [shared, []];
  }

  async _load(method, calls, name, config, weights, preprocessor, rest, patchSize) {
    const [w, transfer] = this._weights(weights);
    // What a grid needs, kept: the config and preprocessing, and the weights file's header alone.
    const view = new DataView(weights.buffer, weights.byteOffset, weights.byteLength);
    const headerLen = weights.byteLength >= 8 ? Math.min(weights.byteLength, 8 + Number(view.getBigUint64(0, true) & 0xffffffffn)) : weights.byteLength;
    const header = weights.slice(0, headerLen);
    const total = weights.byteLength;
    let made = null;
    const grid = { grid: (...a) => (made ??= this._gridOf(name, config, header, total, preprocessor, patchSize)).grid(...a), free: () => made?.free() };
    const { value, all } = await this._send({ op: 'load', method, args: [name, config, w, preprocessor, ...rest] }, transfer);
    const info = JSON.parse(value.info);
    // Each rank holds its share of the weights: the model's are their sum.
    if (info.weightBytes !== undefined) info.weightBytes += all.reduce((a, v) => a + (v ? JSON.parse(v.info).weightBytes || 0 : 0), 0);
    return new RemoteModel(this, value.handle, JSON.stringify(info), calls, grid);
  }

  loadModel(name, config, weights, preprocessor, f16, patchSize, int8) {
    return this._load('loadModel', MODEL_CALLS, name, config, weights, preprocessor, [f16, patchSize, int8], patchSize);
  }

  loadClip(name, config, weights, preprocessor, tokenizer, tokenizerConfig, sentencepiece) {
    return this._load('loadClip', CLIP_CALLS, name, config, weights, preprocessor, [tokenizer, tokenizerConfig, sentencepiece], undefined);
  }
}

/** A model loaded on the workers, with the wasm model's interface. */
class RemoteModel {
  constructor(engine, handle, info, calls, grid) {
    this._engine = engine;
    this._handle = handle;
    this._info = info;
    this._grid = grid;
    for (const method of calls) {
      this[method] = async (...args) => (await engine._send({ op: 'call', handle, method, args })).value;
    }
  }

  info() {
    return this._info;
  }

  grid(width, height, maxPatches, merge) {
    return this._grid.grid(width, height, maxPatches, merge);
  }

  dispose() {
    if (!this._engine.dead) this._engine._send({ op: 'dispose', handle: this._handle }).catch(() => {});
    this._grid.free();
  }

  free() {}
}
