// One worker thread of the package: its own instance of the engine's wasm, as one rank of a CPU
// backend split between workers (or, alone, the whole CPU backend off the page's thread). Runs
// the messages of threads.js in the order they come, one at a time, so that every rank runs the
// same calls in the same order.
let engine = null;
let wasm = null;
const handles = new Map();
let nextHandle = 1;
let queue = Promise.resolve();

function message(e) {
  return e && e.message ? e.message : String(e);
}

function memory() {
  return { wasmBytes: wasm?.memory?.buffer.byteLength ?? 0, inUse: engine ? engine.memoryInUse() : 0 };
}

async function handle(m) {
  if (m.type === 'init') {
    try {
      const glue = await import(m.glue);
      wasm = await glue.default({ module_or_path: m.module });
      engine = m.ranks > 1 ? glue.Engine.createRank(m.rank, m.ranks, m.board, m.memoryBudget ?? undefined) : await glue.Engine.create('cpu', m.memoryBudget ?? undefined, false);
      self.postMessage({ type: 'ready', info: engine.adapterInfo(), memory: memory() });
    } catch (e) {
      self.postMessage({ type: 'ready', error: message(e) });
    }
    return;
  }
  const { id, op, handle: h, method, args } = m;
  try {
    let value;
    if (op === 'load') {
      const model = engine[method](...args);
      handles.set(nextHandle, model);
      value = { handle: nextHandle++, info: model.info() };
    } else if (op === 'call') {
      const model = handles.get(h);
      if (!model) throw new Error('[disposed] this model was disposed');
      value = await model[method](...args);
    } else if (op === 'dispose') {
      const model = handles.get(h);
      if (model) {
        model.dispose();
        model.free();
        handles.delete(h);
      }
    }
    self.postMessage({ id, value, memory: memory() });
  } catch (e) {
    self.postMessage({ id, error: message(e), memory: memory() });
  }
}

self.onmessage = (e) => {
  queue = queue.then(() => handle(e.data));
};
