// SigLIP 2 NaFlex in headless Chromium, on both devices (WebGPU on SwiftShader and the CPU backend, on the page's thread and on two worker threads: the page is cross-origin isolated):
// every fixture case (tests/fixtures/siglip2, made by transformers: an image at a patch budget)
// run from its pixel_values against transformers' outputs; the same images given as files under
// `{ maxPatches }`, preprocessed in the page, against the same outputs; the grid the package
// reports against Siglip2ImageProcessor's; zero-shot with Siglip2Model; bad budgets reject.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

const DIR = 'tests/fixtures/siglip2';
const ATOL = 1e-4;
let server;
let browser;
let page;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'web/pkg/tessera_bg.wasm')), 'build the package first: bash scripts/build_web.sh');
  server = await serve(ROOT, { isolated: true });
  browser = await launch();
  page = await browser.newPage();
  await page.goto(`${server.url}/tests/browser/blank.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const cases = (model) => JSON.parse(readFileSync(join(ROOT, DIR, model, 'cases.json'), 'utf8')).cases;
const expected = (model, c) => readSafetensors(readFileSync(join(ROOT, DIR, model, `expected-${c}.safetensors`)));
const unit = (v) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

for (const device of ['webgpu', 'cpu', 'cpu2']) {
  for (const model of ['siglip2-vision', 'siglip2-classifier']) {
    test(`${model} on ${device}: every grid and budget as transformers`, { timeout: 300_000 }, async () => {
      const list = cases(model);
      const r = await page.evaluate(async ({ dir, model, device, list }) => {
        const { readTensor } = await import('/tests/browser/blank.js');
        const { Tessera } = await import('/web/index.js');
        const engine = await Tessera.create(device === 'cpu2' ? { device: 'cpu', threads: 2 } : { device });
        const m = await engine.load(`/${dir}/${model}`, { cache: false });
        const out = [];
        for (const c of list) {
          const pv = await readTensor(`/${dir}/pixels/${c.case}.safetensors`, 'pixel_values');
          const ran = await m.run(pv.data, pv.dims);
          const image = await (await fetch(`/${c.image}`)).blob();
          const bitmap = await createImageBitmap(image);
          const grid = m.grid(bitmap.width, bitmap.height, { maxPatches: c.budget });
          const embedding = Array.from(await m.embed(image, { maxPatches: c.budget }));
          const top = m.info.head === 'None' ? null : await m.classify(image, { topK: 1, maxPatches: c.budget });
          out.push({
            last: Array.from(ran.lastHiddenState), lastDims: ran.lastHiddenStateDims,
            pooled: ran.poolerOutput ? Array.from(ran.poolerOutput) : null,
            logits: ran.logits ? Array.from(ran.logits) : null, grid, embedding, top,
          });
        }
        const info = m.info;
        m.dispose();
        return { info, out };
      }, { dir: DIR, model, device, list });
      assert.equal(r.info.family, 'Siglip2');
      assert.equal(r.info.maxPatches, 64);
      let worst = 0;
      for (const [i, c] of list.entries()) {
        const exp = expected(model, c.case);
        const got = r.out[i];
        const [rows, cols] = c.grid;
        assert.deepEqual([got.grid.height, got.grid.width, got.grid.rows, got.grid.cols, got.grid.tokens], [...c.size, rows, cols, rows * cols], `${c.case}: grid`);
        assert.deepEqual(got.lastDims, exp.last_hidden_state.dims, `${c.case}: dims`);
        const d = maxDiff(got.last, Array.from(exp.last_hidden_state.data));
        assert.ok(d <= ATOL, `${c.case} last_hidden_state: ${d}`);
        worst = Math.max(worst, d);
        if (exp.pooler_output) {
          const p = maxDiff(got.pooled, Array.from(exp.pooler_output.data));
          assert.ok(p <= ATOL, `${c.case} pooler_output: ${p}`);
          // The image file, preprocessed in the page under the budget: the same embedding.
          const e = maxDiff(got.embedding, Array.from(exp.pooler_output.data));
          assert.ok(e <= ATOL, `${c.case} embed(file, { maxPatches }): ${e}`);
        }
        if (exp.logits) {
          const want = Array.from(exp.logits.data);
          assert.ok(maxDiff(got.logits, want) <= ATOL, `${c.case} logits`);
          const best = want.indexOf(Math.max(...want));
          const z = want.reduce((s, v) => s + Math.exp(v - want[best]), 0);
          assert.equal(got.top[0].index, best, `${c.case}: top class`);
          assert.ok(Math.abs(got.top[0].score - 1 / z) < 1e-4, `${c.case}: top score ${got.top[0].score} against ${1 / z}`);
        }
      }
      console.log(`${model} on ${device}: ${list.length} cases, last_hidden_state within ${worst.toExponential(2)} of transformers`);
    });
  }

  test(`Siglip2Model zero-shot on ${device} matches transformers, at its own budget and another`, { timeout: 300_000 }, async () => {
    const dir = `${DIR}/siglip2-model`;
    const zs = JSON.parse(readFileSync(join(ROOT, dir, 'zero-shot.json'), 'utf8'));
    const want = readSafetensors(readFileSync(join(ROOT, dir, 'zero-shot.safetensors')));
    const c16 = cases('siglip2-model').find((c) => c.image === zs.image && c.budget === 16);
    const r = await page.evaluate(async ({ dir, zs, device }) => {
      const { Tessera } = await import('/web/text.js');
      const engine = await Tessera.create(device === 'cpu2' ? { device: 'cpu', threads: 2 } : { device });
      const model = await engine.loadClip(`/${dir}`, { cache: false });
      const image = await (await fetch(`/${zs.image}`)).blob();
      const scores = await model.zeroShot(image, zs.labels, { template: zs.template });
      const at16 = Array.from(await model.embedImage(image, { maxPatches: 16 }));
      const grid = model.grid(451, 300, { maxPatches: 16 });
      const info = model.info;
      model.dispose();
      return { info, scores, at16, grid };
    }, { dir, zs, device });
    assert.equal(r.info.scores, 'sigmoid');
    assert.equal(r.info.maxPatches, 64);
    for (const [i, label] of zs.labels.entries()) {
      const s = r.scores.find((x) => x.label === label);
      assert.ok(Math.abs(s.logit - want.logits_per_image.data[i]) < 1e-4, `${label}: logit ${s.logit} against ${want.logits_per_image.data[i]}`);
      assert.ok(Math.abs(s.score - want.probs.data[i]) < 1e-5, `${label}: sigmoid`);
    }
    assert.deepEqual([r.grid.rows, r.grid.cols], c16.grid);
    const exp = expected('siglip2-model', c16.case);
    const d = maxDiff(r.at16, unit(Array.from(exp.image_embeds.data)));
    assert.ok(d <= ATOL, `image embedding at 16 patches: ${d}`);
  });
}

test('bad budgets reject with kind "input", naming maxPatches', { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async (dir) => {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu' });
    const naflex = await engine.load(`/${dir}/siglip2-vision`, { cache: false });
    const fixed = await engine.load('/tests/fixtures/siglip/siglip-vision', { cache: false });
    const image = await (await fetch('/tests/fixtures/photos/chelsea.png')).blob();
    const out = {};
    for (const [name, f] of [
      ['zero', () => naflex.embed(image, { maxPatches: 0 })],
      ['fraction', () => naflex.classify(image, { maxPatches: 2.5 })],
      ['huge', () => naflex.embed(image, { maxPatches: 1e9 })],
      ['fixed', () => fixed.embed(image, { maxPatches: 64 })],
      ['grid', async () => naflex.grid(10, 10, { maxPatches: -1 })],
    ]) {
      try {
        await f();
        out[name] = 'accepted';
      } catch (e) {
        out[name] = [e.kind, e.message];
      }
    }
    naflex.dispose();
    fixed.dispose();
    return out;
  }, DIR);
  for (const [name, v] of Object.entries(r)) {
    assert.ok(Array.isArray(v), `${name}: ${v}`);
    assert.equal(v[0], 'input', `${name}: ${v[1]}`);
    assert.match(v[1], /maxPatches|NaFlex|budget/, `${name}: ${v[1]}`);
  }
  assert.match(r.fixed[1], /NaFlex/);
});
