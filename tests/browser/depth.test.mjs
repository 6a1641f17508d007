// Depth Anything and DPT in headless Chromium, on WebGPU (SwiftShader), the CPU backend and two
// worker threads: the random-weight fixtures of tests/fixtures/depth, tests/fixtures/dpt (a ViT
// backbone, readout "project" and "add", batch norm) and tests/fixtures/dpt-dinov2 (a DINOv2
// backbone, photos at their own sizes padded to the patch; all made with transformers) run from
// transformers' pixel_values (`run`'s predictedDepth) and from the photos themselves
// (`model.depth`, at the photo's size after the bicubic post-process), against transformers;
// `paintDepth` draws the map; a model without a depth head rejects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

const DIR = 'tests/fixtures/depth';
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

const PHOTOS = { chelsea: '/tests/fixtures/photos/chelsea.png', portrait: `/${DIR}/portrait-150x220.png` };
const DINOV2 = 'tests/fixtures/dpt-dinov2';
const SMALL = { wide: `/${DINOV2}/photo-wide.png`, tall: `/${DINOV2}/photo-tall.png` };
const MODELS = [
  [DIR, 'depth-anything-v1', PHOTOS],
  [DIR, 'depth-anything-v2-metric', PHOTOS],
  ['tests/fixtures/dpt', 'dpt-project', PHOTOS],
  ['tests/fixtures/dpt', 'dpt-add-bn', PHOTOS],
  [DINOV2, 'dpt-dinov2', SMALL],
];

for (const device of ['webgpu', 'cpu', 'cpu2']) {
  for (const [dir, model, photos] of MODELS) {
    test(`${model} on ${device}: transformers' depth`, { timeout: 300_000 }, async () => {
      const r = await page.evaluate(async ({ dir, model, device, photos }) => {
        const { readTensor } = await import('/tests/browser/blank.js');
        const { Tessera, paintDepth } = await import('/web/index.js');
        const engine = await Tessera.create(device === 'cpu2' ? { device: 'cpu', threads: 2 } : { device });
        const m = await engine.load(`/${dir}/${model}`, { cache: false });
        const out = { info: m.info.depth, cases: {} };
        for (const [name, url] of Object.entries(photos)) {
          const pv = await readTensor(`/${dir}/${model}/expected-${name}.safetensors`, 'pixel_values');
          const ran = await m.run(pv.data, pv.dims);
          const blob = await (await fetch(url)).blob();
          const d = await m.depth(blob);
          const canvas = document.createElement('canvas');
          const range = paintDepth(canvas, d, { colormap: 'viridis' });
          out.cases[name] = { predicted: Array.from(ran.predictedDepth), dims: ran.predictedDepthDims, depth: Array.from(d.depth), width: d.width, height: d.height, canvas: [canvas.width, canvas.height], range };
        }
        return out;
      }, { dir, model, device, photos });
      assert.equal(r.info, model.includes('metric') ? 'metric' : 'relative');
      for (const name of Object.keys(photos)) {
        const exp = readSafetensors(readFileSync(join(ROOT, dir, model, `expected-${name}.safetensors`)));
        const c = r.cases[name];
        const want = exp.predicted_depth;
        assert.deepEqual(c.dims, want.dims, `${name}: predictedDepth's shape`);
        const e1 = maxDiff(c.predicted, want.data);
        assert.ok(e1 <= 1e-4, `${model} ${name} on ${device}: predicted_depth differs by ${e1}`);
        const at = exp.depth_at_input;
        assert.deepEqual([c.height, c.width], at.dims, `${name}: the photo's size`);
        const e2 = maxDiff(c.depth, at.data);
        assert.ok(e2 <= 2e-4, `${model} ${name} on ${device}: depth at the photo's size differs by ${e2}`);
        assert.deepEqual(c.canvas, [c.width, c.height]);
        assert.ok(c.range.max > c.range.min);
      }
    });
  }
}

test('a model without a depth head rejects depth(), and paintDepth refuses a bad map', { timeout: 120_000 }, async () => {
  const r = await page.evaluate(async () => {
    const { Tessera, paintDepth } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu' });
    const m = await engine.load('/tests/fixtures/vit-classifier', { cache: false });
    const errors = [];
    try {
      await m.depth(new ImageData(8, 8));
    } catch (e) {
      errors.push([e.kind, e.message]);
    }
    try {
      paintDepth(document.createElement('canvas'), { depth: new Float32Array(3), width: 2, height: 2 });
    } catch (e) {
      errors.push([e.kind, e.message]);
    }
    return { info: m.info.depth, errors };
  });
  assert.equal(r.info, null);
  assert.equal(r.errors.length, 2);
  assert.equal(r.errors[0][0], 'input');
  assert.match(r.errors[0][1], /no depth head/);
  assert.match(r.errors[1][1], /width x height/);
});
