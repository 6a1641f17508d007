// The two wasm builds of the CPU backend in headless Chromium: the relaxed-SIMD build (fused
// multiply-adds; what the package loads where the browser validates relaxed SIMD, as Chromium
// does) and the simd128 build (`relaxedSimd: false`), each on its own page. For checkpoints of
// every family, both match transformers' expected outputs within 1e-4 and each other within 1e-5;
// 8-bit checkpoints in int8 arithmetic agree between the builds to the activations' rounding.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

let server;
let browser;
const pages = {};

before(async () => {
  server = await serve();
  browser = await launch();
  for (const [build, relaxedSimd] of [['relaxed', true], ['simd128', false]]) {
    const page = await browser.newPage();
    await page.goto(`${server.url}/tests/browser/blank.html`);
    const isa = await page.evaluate(async (relaxedSimd) => {
      const { Tessera } = await import('/web/index.js');
      window.cpuEngine = await Tessera.create({ device: 'cpu', relaxedSimd });
      return window.cpuEngine.adapterInfo.isa;
    }, relaxedSimd);
    pages[build] = { page, isa };
  }
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('Chromium loads the relaxed-SIMD build by default and the simd128 build when asked', () => {
  assert.equal(pages.relaxed.isa, 'simd128+relaxed');
  assert.equal(pages.simd128.isa, 'simd128');
});

async function runOn(build, fixture, int8) {
  return pages[build].page.evaluate(async ([name, int8]) => {
    const { readTensor } = await import('/tests/browser/blank.js');
    const model = await window.cpuEngine.load(`/tests/fixtures/${name}`, { cache: false, int8 });
    const pv = await readTensor(`/tests/fixtures/${name}/expected.safetensors`, 'pixel_values');
    const out = await model.run(pv.data, pv.dims);
    model.dispose();
    return { last: Array.from(out.lastHiddenState), logits: out.logits ? Array.from(out.logits) : null, pooler: out.poolerOutput ? Array.from(out.poolerOutput) : null };
  }, [fixture, int8]);
}

const FIXTURES = ['vit-classifier', 'deit-distilled-bf16', 'dinov2-base', 'timm/vit-reg-avg', 'clip/clip-vision-projection', 'siglip/siglip-classifier', 'quant/deit-distilled-int4'];
for (const fixture of FIXTURES) {
  test(`${fixture}: both builds match transformers and each other`, { timeout: 300_000 }, async () => {
    const expected = readSafetensors(readFileSync(join(ROOT, 'tests/fixtures', fixture, 'expected.safetensors')));
    const relaxed = await runOn('relaxed', fixture, false);
    const plain = await runOn('simd128', fixture, false);
    for (const [name, key] of [['last_hidden_state', 'last'], ['logits', 'logits'], ['pooler_output', 'pooler']]) {
      if (!expected[name]) continue;
      for (const [build, got] of [['relaxed', relaxed], ['simd128', plain]]) {
        const d = maxDiff(got[key], expected[name].data);
        assert.ok(d <= 1e-4, `${fixture} ${name} on the ${build} build: ${d} from transformers`);
      }
      const between = maxDiff(relaxed[key], plain[key]);
      console.log(`${fixture} ${name}: relaxed vs simd128 ${between.toExponential(2)}`);
      assert.ok(between <= 1e-5, `${fixture} ${name}: the builds differ by ${between}`);
    }
  });
}

test('int8 arithmetic agrees between the builds', { timeout: 300_000 }, async () => {
  const fixture = 'quant/vit-classifier-int8';
  const relaxed = await runOn('relaxed', fixture, true);
  const plain = await runOn('simd128', fixture, true);
  const d = maxDiff(relaxed.last, plain.last);
  console.log(`${fixture} int8: relaxed vs simd128 ${d.toExponential(2)}`);
  // The activations are quantized from f32 values that differ in their last bits between the
  // builds; a value on a rounding boundary moves by one step.
  assert.ok(d <= 1e-2, `${fixture}: the builds' int8 runs differ by ${d}`);
});
