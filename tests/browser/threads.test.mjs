// The CPU backend on worker threads in headless Chromium: how many threads a page gets and why
// (cross-origin isolated or not, asked or by default); classify, embed, attention maps and grids
// on two and three threads equal the page's one thread within 1e-5 (relaxed SIMD on and off); a worker killed
// mid-run rejects the call with a clear error, and the next call runs on one thread; the package
// inside a module worker runs on two threads of its own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ROOT, serve, launch, maxDiff } from './harness.mjs';

let isolated;
let plain;
let browser;

before(async () => {
  isolated = await serve(ROOT, { isolated: true });
  plain = await serve(ROOT);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await isolated?.close();
  await plain?.close();
});

async function onPage(server, f, arg) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/tests/browser/blank.html`);
  try {
    return await page.evaluate(f, arg);
  } finally {
    await page.close();
    assert.deepEqual(errors, []);
  }
}

test('a page gets worker threads where it is cross-origin isolated, one thread with the reason elsewhere', { timeout: 120_000 }, async () => {
  const plainPage = await onPage(plain, async () => {
    const { Tessera } = await import('/web/index.js');
    const asked = await Tessera.create({ device: 'cpu', threads: 2 });
    const byDefault = await Tessera.create({ device: 'cpu' });
    const model = await asked.load('/tests/fixtures/vit-classifier', { cache: false });
    const top = await model.classify(await (await fetch('/tests/fixtures/photos/chelsea.png')).blob(), { topK: 1 });
    const bad = [];
    for (const threads of [0, 2.5, 65, 'two']) {
      try {
        await Tessera.create({ device: 'cpu', threads });
        bad.push('accepted');
      } catch (e) {
        bad.push(e.kind);
      }
    }
    return { isolated: crossOriginIsolated, asked: [asked.adapterInfo.threads, asked.deviceReason], byDefault: [byDefault.adapterInfo.threads, byDefault.threadsReason], top: top.length, bad };
  });
  assert.equal(plainPage.isolated, false);
  assert.equal(plainPage.asked[0], 1);
  assert.match(plainPage.asked[1], /1 thread: 2 were asked, but the page is not cross-origin isolated \(COOP\/COEP\)/);
  assert.equal(plainPage.byDefault[0], 1);
  assert.match(plainPage.byDefault[1], /not cross-origin isolated/);
  assert.equal(plainPage.top, 1);
  assert.deepEqual(plainPage.bad, ['input', 'input', 'input', 'input']);

  const iso = await onPage(isolated, async () => {
    const { Tessera } = await import('/web/index.js');
    const byDefault = await Tessera.create({ device: 'cpu' });
    const two = await Tessera.create({ device: 'cpu', threads: 2 });
    const info = [two.adapterInfo, two.deviceReason, two.memory];
    two.close();
    return { isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency, byDefault: [byDefault.adapterInfo.threads, byDefault.threadsReason], two: info };
  });
  assert.equal(iso.isolated, true);
  // As ONNX Runtime Web: min(4, ceil(cores / 2)).
  assert.equal(iso.byDefault[0], Math.min(4, Math.ceil(iso.cores / 2)), iso.byDefault[1]);
  assert.match(iso.byDefault[1], /half of the \d+ logical cores/);
  assert.equal(iso.two[0].threads, 2);
  assert.equal(iso.two[0].worker, true);
  assert.match(iso.two[0].name, /2 threads/);
  assert.match(iso.two[1], /2 threads: as asked/);
  assert.equal(iso.two[2].workerWasmBytes.length, 2);
  assert.ok(iso.two[2].exchangeBytes > 0);
});

// Every call through the model wrappers, on a photo: each thread count's results against the
// page's own thread, for checkpoints of every pooling kind.
const PHOTO = '/tests/fixtures/photos/chelsea.png';
for (const [relaxedSimd, threads] of [[true, 2], [true, 3], [false, 2]]) {
  test(`classify, embed, attention and grid on ${threads} threads equal one thread (relaxedSimd: ${relaxedSimd})`, { timeout: 300_000 }, async () => {
    const r = await onPage(isolated, async ([photo, relaxedSimd, threads]) => {
      const { Tessera } = await import('/web/index.js');
      const one = await Tessera.create({ device: 'cpu', threads: 1, relaxedSimd });
      const many = await Tessera.create({ device: 'cpu', threads, relaxedSimd });
      const image = await (await fetch(photo)).blob();
      const out = { isa: [one.adapterInfo.isa, many.adapterInfo.isa], threads: many.adapterInfo.threads, cases: [] };
      for (const [fixture, opts] of [['vit-classifier', {}], ['dinov2-classifier', {}], ['deit-distilled-bf16', { patchSize: 8 }], ['siglip/siglip-classifier', {}], ['quant/vit-classifier-int8', { int8: true }], ['siglip2/siglip2-classifier', {}]]) {
        const each = [];
        for (const engine of [one, many]) {
          const m = await engine.load(`/tests/fixtures/${fixture}`, { cache: false, ...opts });
          const budget = m.info.maxPatches ? { maxPatches: 24 } : {};
          const top = await m.classify(image, { topK: 3, ...budget });
          const emb = Array.from(await m.embed(image, budget));
          const att = await m.attention(image, budget);
          each.push({ info: m.info, top, emb, att: Array.from(att.mean), grid: m.grid(640, 480, budget) });
          m.dispose();
        }
        out.cases.push([fixture, each]);
      }
      many.close();
      return out;
    }, [PHOTO, relaxedSimd, threads]);
    assert.equal(r.threads, threads);
    assert.equal(r.isa[0], r.isa[1]);
    assert.equal(r.isa[0], relaxedSimd ? 'simd128+relaxed' : 'simd128');
    for (const [fixture, [one, many]] of r.cases) {
      assert.deepEqual(many.top.map((t) => t.index), one.top.map((t) => t.index), fixture);
      const scores = maxDiff(many.top.map((t) => t.score), one.top.map((t) => t.score));
      const emb = maxDiff(many.emb, one.emb);
      const att = maxDiff(many.att, one.att);
      console.log(`${fixture} on ${threads} threads (relaxedSimd: ${relaxedSimd}): scores ${scores.toExponential(2)}, embedding ${emb.toExponential(2)}, attention ${att.toExponential(2)} from one thread`);
      assert.ok(scores <= 1e-5 && emb <= 1e-5 && att <= 1e-5, fixture);
      assert.deepEqual(many.grid, one.grid, fixture);
      assert.equal(many.info.arithmetic.int8Layers, one.info.arithmetic.int8Layers, fixture);
      // Each thread holds its share of the matrices (and its own copy of the small weights): not a
      // copy of the whole model each.
      assert.ok(many.info.weightBytes >= one.info.weightBytes * 0.99 && many.info.weightBytes < one.info.weightBytes * threads * 0.9, `${fixture}: ${many.info.weightBytes} against ${one.info.weightBytes}`);
    }
  });
}

test('a worker killed mid-run rejects the call with a clear error, and the next call runs on one thread', { timeout: 300_000 }, async () => {
  const r = await onPage(isolated, async () => {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu', threads: 2 });
    const model = await engine.load('/tests/fixtures/vit-classifier', { cache: false });
    const image = await (await fetch('/tests/fixtures/photos/chelsea.png')).blob();
    const before = await model.classify(image, { topK: 3 });
    // A run long enough to be in flight when the worker goes: 32 images of 512 x 512.
    const dims = [32, 3, 512, 512];
    const pixels = new Float32Array(dims.reduce((a, b) => a * b)).map((_, i) => Math.sin(i));
    const t0 = performance.now();
    const running = model.run(pixels, dims);
    await new Promise((ok) => setTimeout(ok, 50));
    engine.terminateWorker(1);
    let failure = null;
    try {
      await running;
    } catch (e) {
      failure = { kind: e.kind, message: e.message, ms: performance.now() - t0 };
    }
    const after = await model.classify(image, { topK: 3 });
    const again = await model.run(pixels.subarray(0, 3 * 512 * 512), [1, 3, 512, 512]);
    return { failure, before, after, threads: engine.adapterInfo.threads, reason: engine.threadsReason, again: again.logits.length };
  });
  assert.ok(r.failure, 'the call in flight rejected');
  assert.equal(r.failure.kind, 'thread');
  assert.match(r.failure.message, /worker thread 1 was terminated/);
  // Now on one thread: the same classes, the scores within 1e-5 (the split's summation order).
  assert.deepEqual(r.after.map((t) => t.index), r.before.map((t) => t.index));
  assert.ok(maxDiff(r.after.map((t) => t.score), r.before.map((t) => t.score)) <= 1e-5);
  assert.equal(r.threads, 1);
  assert.match(r.reason, /1 thread: worker thread 1 was terminated/);
  assert.equal(r.again, 5);
  console.log(`killed mid-run: rejected after ${r.failure.ms.toFixed(0)} ms (${r.failure.message}); then: ${r.reason}`);
});

test('the package inside a module worker runs on two threads of its own', { timeout: 300_000 }, async () => {
  const r = await onPage(isolated, async () => {
    const worker = new Worker('/tests/browser/worker.js', { type: 'module' });
    const inWorker = await new Promise((ok) => {
      worker.onmessage = (e) => ok(e.data);
      worker.onerror = (e) => ok({ error: `worker error: ${e.message}` });
      worker.postMessage({ fixture: 'vit-classifier', photo: '/tests/fixtures/photos/chelsea.png', relaxedSimd: true, threads: 2 });
    });
    worker.terminate();
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu', threads: 1 });
    const model = await engine.load('/tests/fixtures/vit-classifier', { cache: false });
    const top = await model.classify(await (await fetch('/tests/fixtures/photos/chelsea.png')).blob(), { topK: 3 });
    return { inWorker, top };
  });
  assert.equal(r.inWorker.error, undefined, r.inWorker.error);
  assert.equal(r.inWorker.threads, 2);
  assert.deepEqual(r.inWorker.top.map((t) => t.index), r.top.map((t) => t.index));
  assert.ok(maxDiff(r.inWorker.top.map((t) => t.score), r.top.map((t) => t.score)) <= 1e-5);
});
