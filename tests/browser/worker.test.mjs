// The package inside a module worker, in headless Chromium: on the CPU backend, with the relaxed
// SIMD build and without, a checkpoint's logits match transformers' expected ones within 1e-4 and
// a photo given as a Blob classifies as it does on the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await serve();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const FIXTURE = 'vit-classifier';
const PHOTO = '/tests/fixtures/photos/chelsea.png';

for (const relaxedSimd of [true, false]) {
  test(`the package runs in a module worker (relaxedSimd: ${relaxedSimd})`, { timeout: 300_000 }, async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/tests/browser/blank.html`);
    const { inWorker, onPage } = await page.evaluate(async ([fixture, photo, relaxedSimd]) => {
      const worker = new Worker('/tests/browser/worker.js', { type: 'module' });
      const inWorker = await new Promise((ok) => {
        worker.onmessage = (e) => ok(e.data);
        worker.onerror = (e) => ok({ error: `worker error: ${e.message}` });
        worker.postMessage({ fixture, photo, relaxedSimd });
      });
      worker.terminate();
      // The same photo on the page, for the classes.
      const { Tessera } = await import('/web/index.js');
      const engine = await Tessera.create({ device: 'cpu', relaxedSimd });
      const model = await engine.load(`/tests/fixtures/${fixture}`, { cache: false });
      const top = await model.classify(await (await fetch(photo)).blob(), { topK: 3 });
      model.dispose();
      return { inWorker, onPage: top };
    }, [FIXTURE, PHOTO, relaxedSimd]);
    await page.close();
    assert.equal(inWorker.error, undefined, inWorker.error);
    assert.equal(inWorker.device, 'cpu');
    assert.equal(inWorker.isa, relaxedSimd ? 'simd128+relaxed' : 'simd128');
    const expected = readSafetensors(readFileSync(join(ROOT, 'tests/fixtures', FIXTURE, 'expected.safetensors')));
    const d = maxDiff(inWorker.logits, expected.logits.data);
    console.log(`in a worker (relaxedSimd: ${relaxedSimd}): logits ${d.toExponential(2)} from transformers`);
    assert.ok(d <= 1e-4, `logits ${d} from transformers`);
    assert.deepEqual(inWorker.top.map((t) => t.index), onPage.map((t) => t.index));
    for (const [w, p] of inWorker.top.map((t, i) => [t.score, onPage[i].score])) {
      assert.ok(Math.abs(w - p) <= 1e-5, `scores ${w} in the worker, ${p} on the page`);
    }
  });
}
