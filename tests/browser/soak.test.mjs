// A shorter soak in the browser: many classify calls, then models loaded and disposed
// repeatedly, with the engine's GPU memory and the wasm heap sampled. After warm-up neither
// grows; after each dispose the GPU memory is back where it was before the load. A memory
// budget refuses a model that does not fit with kind "out_of_memory".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch } from './harness.mjs';

const RUNS = Number(process.env.TESSERA_BROWSER_SOAK_RUNS || 200);
const LOADS = Number(process.env.TESSERA_BROWSER_SOAK_LOADS || 20);

let server;
let browser;
let page;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'web/pkg/tessera_bg.wasm')), 'build the package first: bash scripts/build_web.sh');
  server = await serve();
  browser = await launch();
  page = await browser.newPage();
  await page.goto(`${server.url}/tests/browser/blank.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

for (const device of ['webgpu', 'cpu']) {
test(`${RUNS} classify calls and ${LOADS} loads and disposes on ${device} without memory growth`, { timeout: 900_000 }, async () => {
  const r = await page.evaluate(async ({ runs, loads, device }) => {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device });
    const start = engine.memory;
    const blob = await (await fetch('/models/fashion-vit/samples/0000-ankle-boot.png')).blob();
    const model = await engine.load('/models/fashion-vit', { cache: false });
    const loaded = engine.memory;
    const first = JSON.stringify(await model.classify(blob, { topK: 3 }));
    const samples = [];
    let differing = 0;
    const t0 = performance.now();
    for (let i = 1; i <= runs; i++) {
      const top = JSON.stringify(await model.classify(blob, { topK: 3 }));
      if (top !== first) differing++;
      if (i % Math.max(1, runs / 10) === 0) samples.push({ run: i, ...engine.memory });
    }
    const seconds = (performance.now() - t0) / 1000;
    model.dispose();
    const afterDispose = engine.memory;
    const cycles = [];
    for (let i = 0; i < loads; i++) {
      const before = engine.memory.gpuBytes;
      const m = await engine.load('/models/fashion-vit', { cache: false });
      await m.classify(blob, { topK: 1 });
      const held = engine.memory.gpuBytes;
      m.dispose();
      cycles.push({ before, held, after: engine.memory.gpuBytes, wasmBytes: engine.memory.wasmBytes });
    }
    return { start, loaded, samples, differing, seconds, afterDispose, cycles };
  }, { runs: RUNS, loads: LOADS, device });
  const warm = r.samples[0];
  const last = r.samples[r.samples.length - 1];
  console.log(`${device}: ${RUNS} runs in ${r.seconds.toFixed(1)} s; device ${warm.gpuBytes} -> ${last.gpuBytes} bytes, wasm heap ${warm.wasmBytes} -> ${last.wasmBytes} bytes`);
  const c0 = r.cycles[Math.min(2, r.cycles.length - 1)];
  const cl = r.cycles[r.cycles.length - 1];
  console.log(`${LOADS} loads: GPU held per model ${cl.held - cl.before} bytes; wasm heap ${c0.wasmBytes} -> ${cl.wasmBytes} bytes`);
  assert.equal(r.start.gpuBytes, 0);
  assert.ok(r.loaded.gpuBytes > 500_000, `the model's weights are counted (${r.loaded.gpuBytes})`);
  assert.equal(r.differing, 0, 'every result equals the first');
  for (const s of r.samples) {
    assert.equal(s.gpuBytes, warm.gpuBytes, `GPU memory changed at run ${s.run}`);
    assert.equal(s.wasmBytes, warm.wasmBytes, `wasm heap grew at run ${s.run}`);
  }
  assert.equal(r.afterDispose.gpuBytes, 0, 'dispose frees every GPU buffer');
  for (const [i, c] of r.cycles.entries()) {
    assert.equal(c.before, 0, `cycle ${i} started with GPU memory held`);
    assert.equal(c.after, 0, `cycle ${i}: dispose left GPU memory held`);
    assert.ok(c.held > 500_000, `cycle ${i}: the model was counted`);
  }
  assert.equal(cl.wasmBytes, c0.wasmBytes, 'wasm heap grew across loads and disposes');
});
}

test('a memory budget refuses a model that does not fit, and the engine stays usable', { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async () => {
    const { Tessera } = await import('/web/index.js');
    const small = await Tessera.create({ memoryBudget: 100_000, device: 'webgpu' });
    let error = null;
    try {
      await small.load('/models/fashion-vit', { cache: false });
    } catch (e) {
      error = { kind: e.kind, message: e.message };
    }
    const big = await Tessera.create({ memoryBudget: 64 << 20, device: 'cpu' });
    const m = await big.load('/models/fashion-vit', { cache: false });
    const blob = await (await fetch('/models/fashion-vit/samples/0002-trouser.png')).blob();
    const top = await m.classify(blob, { topK: 1 });
    m.dispose();
    return { error, memory: small.memory, top, budget: big.memory.budget };
  });
  assert.equal(r.error?.kind, 'out_of_memory', JSON.stringify(r.error));
  assert.match(r.error.message, /model\.safetensors.*budget/);
  assert.equal(r.memory.gpuBytes, 0);
  assert.equal(r.budget, 64 << 20);
  assert.equal(r.top[0].label, 'Trouser');
});
