// The two wasm builds of the CPU backend in headless Chromium: the relaxed-SIMD build (fused
// multiply-adds; what the package loads where the browser validates relaxed SIMD, as Chromium
// does) and the simd128 build (`relaxedSimd: false`), each on its own page. For checkpoints of
// every family, both match transformers' expected outputs within 1e-4 and each other within 1e-5;
// 8-bit checkpoints in int8 arithmetic agree between the builds to the activations' rounding.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT, NATIVE, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

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

// Int8 arithmetic: the relaxed build's kernel is `i32x4.relaxed_dot_i8x16_i7x16_add` with 7-bit
// activations, the simd128 build's widening i8 x i8 products with 8-bit ones; each is near
// transformers' float model (cosine > 0.999, the same top class), and near each other; each
// equals the native kernel of the same arithmetic (AVX2's 7-bit form, the portable 8-bit one).
test('int8 arithmetic runs the relaxed dot product on the relaxed build, and both stay near transformers', { timeout: 300_000 }, async () => {
  const fixture = 'quant/vit-classifier-int8';
  const expected = readSafetensors(readFileSync(join(ROOT, 'tests/fixtures', fixture, 'expected.safetensors')));
  const kernels = {};
  for (const build of ['relaxed', 'simd128']) {
    kernels[build] = await pages[build].page.evaluate(async (name) => {
      const model = await window.cpuEngine.load(`/tests/fixtures/${name}`, { cache: false, int8: true });
      const k = model.info.arithmetic.kernel;
      model.dispose();
      return k;
    }, fixture);
  }
  assert.deepEqual(kernels, { relaxed: 'wasm-relaxed', simd128: 'wasm-simd128' });
  const cosine = (a, b) => {
    let dot = 0, aa = 0, bb = 0;
    a.forEach((v, i) => { dot += v * b[i]; aa += v * v; bb += b[i] * b[i]; });
    return dot / Math.sqrt(aa * bb);
  };
  const argmax = (v) => v.indexOf(Math.max(...v));
  const runs = { relaxed: await runOn('relaxed', fixture, true), simd128: await runOn('simd128', fixture, true) };
  for (const [build, got] of Object.entries(runs)) {
    const c = cosine(got.last, expected.last_hidden_state.data);
    console.log(`${fixture} int8 on the ${build} build: cosine ${c.toFixed(6)} to transformers`);
    assert.ok(c > 0.999, `${build}: cosine ${c}`);
    const n = expected.logits.dims[1];
    for (let i = 0; i * n < got.logits.length; i++) {
      assert.equal(argmax(got.logits.slice(i * n, (i + 1) * n)), argmax(Array.from(expected.logits.data.slice(i * n, (i + 1) * n))), `${build}: top class of image ${i}`);
    }
  }
  assert.ok(cosine(runs.relaxed.last, runs.simd128.last) > 0.999);
  // The same integer arithmetic natively: the AVX2 kernel also takes 7-bit activations stored
  // with offset 64, so the sums agree exactly and only a quantization step flipped by the last
  // bits of an f32 activation can differ.
  // The simd128 build's kernel does the portable kernel's 8-bit signed arithmetic.
  const dir = join(ROOT, 'tests/fixtures', fixture);
  for (const [build, kernel] of [['relaxed', 'avx2'], ['simd128', 'portable']]) {
    const native = join(mkdtempSync(join(tmpdir(), 'tessera-native-')), 'out.safetensors');
    execFileSync(NATIVE, ['--device', 'cpu', 'run', '--int8', '--model', dir, '--pixels', join(dir, 'expected.safetensors'), '--out', native], { stdio: 'pipe', env: { ...process.env, TESSERA_CPU_INT8: kernel } });
    const nat = readSafetensors(readFileSync(native)).last_hidden_state.data;
    const d = maxDiff(runs[build].last, nat);
    console.log(`${fixture} int8: the ${build} build vs the native ${kernel} int8 kernel ${d.toExponential(2)}`);
    assert.ok(d <= 1e-2, `${fixture}: the ${build} build is ${d} from the native ${kernel} int8 run`);
  }
});
