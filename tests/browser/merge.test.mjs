// Token merging (ToMe) in headless Chromium, on WebGPU (SwiftShader), the CPU backend and two
// worker threads: the ToMe fixtures (tests/fixtures/tome, made with ToMe's own timm patch) run from
// their pixel_values with `{ merge }` per call and as the model's default, against the patched
// model's logits and tokens left; the grid's plan and the attention map's groups; bad values reject.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

const DIR = 'tests/fixtures/tome';
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

for (const device of ['webgpu', 'cpu', 'cpu2']) {
  for (const [model, cases] of [['deit-s', ['r3', 'r8-decreasing', 'r20']], ['deit-ti-distilled', ['r5']], ['siglip-map', ['r5']]]) {
    test(`${model} on ${device}: merged as ToMe`, { timeout: 300_000 }, async () => {
      const exp = readSafetensors(readFileSync(join(ROOT, DIR, model, 'expected.safetensors')));
      const merges = cases.map((c) => ({ r: exp[`${c}/r`].data[0], schedule: exp[`${c}/schedule`].data[0] > 0.5 ? 'decreasing' : 'constant' }));
      const r = await page.evaluate(async ({ dir, model, device, merges }) => {
        const { readTensor } = await import('/tests/browser/blank.js');
        const { Tessera } = await import('/web/index.js');
        const engine = await Tessera.create(device === 'cpu2' ? { device: 'cpu', threads: 2 } : { device });
        const pv = await readTensor(`/${dir}/${model}/expected.safetensors`, 'pixel_values');
        const perCall = await engine.load(`/${dir}/${model}`, { cache: false });
        const out = [];
        for (const merge of merges) {
          const ran = await perCall.run(pv.data, pv.dims, { merge });
          const grid = perCall.grid(pv.dims[3], pv.dims[2], { merge });
          out.push({ logits: ran.logits ? Array.from(ran.logits) : null, last: Array.from(ran.lastHiddenState), lastDims: ran.lastHiddenStateDims, grid });
        }
        // The first case as the model's default, and r = 0 per call over it.
        const byDefault = await engine.load(`/${dir}/${model}`, { cache: false, merge: merges[0] });
        const d = await byDefault.run(pv.data, pv.dims);
        const off = await byDefault.run(pv.data, pv.dims, { merge: 0 });
        const plain = await perCall.run(pv.data, pv.dims);
        const errors = [];
        for (const bad of [-1, 1.5, 'x', { r: 2, schedule: 'sideways' }]) {
          try {
            await perCall.run(pv.data, pv.dims, { merge: bad });
            errors.push(null);
          } catch (e) {
            errors.push([e.kind, e.message]);
          }
        }
        perCall.dispose();
        byDefault.dispose();
        return { out, byDefault: Array.from(d.lastHiddenState), off: Array.from(off.lastHiddenState), plain: Array.from(plain.lastHiddenState), errors };
      }, { dir: DIR, model, device, merges });
      for (const [i, c] of cases.entries()) {
        const got = r.out[i];
        const tokens = Array.from(exp[`${c}/tokens`].data);
        assert.deepEqual(got.lastDims, exp[`${c}/last_hidden_state`].dims, `${c}: the tokens left`);
        const dl = maxDiff(got.last, Array.from(exp[`${c}/last_hidden_state`].data));
        assert.ok(dl <= ATOL, `${c} last_hidden_state: ${dl}`);
        if (exp[`${c}/logits`]) {
          const dg = maxDiff(got.logits, Array.from(exp[`${c}/logits`].data));
          assert.ok(dg <= ATOL, `${c} logits: ${dg}`);
        }
        assert.deepEqual(got.grid.merge.layers.map((l) => l.tokens), tokens.slice(0, -1), `${c}: the grid's plan`);
        assert.equal(got.grid.merge.tokensLeft, tokens[tokens.length - 1], `${c}: tokens left`);
      }
      assert.deepEqual(r.byDefault, r.out[0].last, 'the model default equals the same merge per call');
      assert.deepEqual(r.off, r.plain, 'merge: 0 per call over a merging default is the unmerged model');
      for (const e of r.errors) assert.ok(e && e[0] === 'input' && /merge/.test(e[1]), `bad merge rejected as input: ${JSON.stringify(e)}`);
    });
  }
}

test('the attention map of a merged model names its groups', { timeout: 120_000 }, async () => {
  const r = await page.evaluate(async ({ dir }) => {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu' });
    const m = await engine.load(`/${dir}/deit-s`, { cache: false, merge: 8 });
    const canvas = new OffscreenCanvas(64, 64);
    const ctx = canvas.getContext('2d');
    const g = ctx.createLinearGradient(0, 0, 64, 64);
    g.addColorStop(0, '#102030');
    g.addColorStop(1, '#f0e0a0');
    ctx.fillStyle = g;
    ctx.fillRect(0, 0, 64, 64);
    const img = ctx.getImageData(0, 0, 64, 64);
    const merged = await m.attention(img);
    const plain = await m.attention(img, { merge: 0 });
    return { groups: merged.groups ? Array.from(merged.groups) : null, mean: Array.from(merged.mean), plainGroups: plain.groups };
  }, { dir: DIR });
  assert.equal(r.groups.length, 64, 'a group per patch');
  assert.equal(new Set(r.groups).size, 40, 'the 40 patch tokens entering the last layer (65 - 3 x 8, less the class token)');
  assert.equal(r.plainGroups, null, 'no groups without merging');
});
