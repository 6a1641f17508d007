// The demo page end to end in headless Chromium on WebGPU (`?device=webgpu`: SwiftShader here,
// which `auto` would pass over for the CPU backend): a real drag-and-drop of an image file onto the
// drop zone, the top-1 label checked against `tessera classify` natively on the same file, the
// heatmap drawn, bad files shown as messages without breaking the page, and a screenshot.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, NATIVE, serve, launch } from './harness.mjs';

let server;
let browser;
let page;
const consoleErrors = [];
const SHOTS = join(ROOT, 'target/browser');

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await serve();
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  await page.goto(`${server.url}/demo/?device=webgpu`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

async function dropFile(path, name, type, on = page) {
  const bytes = path ? Array.from(readFileSync(path)) : [];
  const dataTransfer = await on.evaluateHandle(({ bytes, name, type }) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
    return dt;
  }, { bytes, name, type });
  await on.evaluate(() => {
    delete document.body.dataset.result;
  });
  for (const ev of ['dragenter', 'dragover', 'drop']) {
    await on.dispatchEvent('#drop', ev, { dataTransfer });
  }
}

function nativeTop1(file) {
  const out = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', file], { encoding: 'utf8' }));
  return out.results[0].top[0].label;
}

test('dropping an image shows the same top-1 label as the native CLI, with the heatmap', { timeout: 300_000 }, async () => {
  for (const sample of ['0009-sneaker.png', '0004-shirt.png']) {
    const file = join(ROOT, 'models/fashion-vit/samples', sample);
    await dropFile(file, sample, 'image/png');
    await page.waitForSelector('body[data-result]', { timeout: 120_000 });
    const shown = await page.textContent('#predictions li:first-child .label');
    assert.equal(shown, nativeTop1(file), `${sample}: browser and native disagree`);
    assert.equal(await page.locator('#predictions li').count(), 5);
    const lit = await page.evaluate(() => {
      const c = document.getElementById('heat');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return { n, total: d.length / 4, drawn: c.dataset.drawn };
    });
    assert.equal(lit.drawn, 'true');
    assert.ok(lit.n > lit.total / 2, `heatmap covers ${lit.n} of ${lit.total} pixels`);
  }
  assert.match(await page.textContent('#latency'), /ms/);
  assert.notEqual((await page.textContent('#adapter')).trim(), '–');
  await page.screenshot({ path: join(SHOTS, 'demo.png') });
});

test('the patch-size control re-runs the image: the grid follows, the label is the native one at that size', { timeout: 300_000 }, async () => {
  const file = join(ROOT, 'models/fashion-vit/samples/0004-shirt.png');
  assert.equal(await page.getAttribute('body', 'data-grid'), '7x7');
  const options = await page.$$eval('#patchSize option', (o) => o.map((x) => x.value));
  assert.deepEqual(options, ['2', '4', '7', '14']);
  for (const [p, grid] of [['2', '14x14'], ['14', '2x2'], ['7', '4x4']]) {
    await page.evaluate(() => {
      delete document.body.dataset.result;
      delete document.body.dataset.grid;
    });
    await page.selectOption('#patchSize', p);
    await page.waitForSelector(`body[data-patch="${p}"][data-grid="${grid}"][data-result]`, { timeout: 180_000 });
    const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', '--patch-size', p, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    assert.equal(await page.textContent('#predictions li:first-child .label'), native.results[0].top[0].label, `patch ${p}`);
    assert.match(await page.textContent('#latency'), new RegExp(`ms \\(classify at patch ${p},`));
    assert.match(await page.textContent('#tokens'), new RegExp(`PI-resized from 4`));
    assert.match(await page.textContent('#modelName'), new RegExp(`patch ${p},`));
    if (p === '2') await page.screenshot({ path: join(SHOTS, 'demo-patch2.png') });
    if (p === '14') await page.screenshot({ path: join(SHOTS, 'demo-patch14.png') });
  }
  await page.selectOption('#patchSize', '4');
  await page.waitForSelector('body[data-patch="4"][data-grid="7x7"]', { timeout: 180_000 });
  assert.equal(await page.isHidden('#error'), true);
});

test('the token-merging control: the native label and tokens left at each r, and the merged regions drawn', { timeout: 300_000 }, async () => {
  const file = join(ROOT, 'models/fashion-vit/samples/0009-sneaker.png');
  await dropFile(file, 'sneaker.png', 'image/png');
  await page.waitForSelector('body[data-result][data-merge="0"]', { timeout: 120_000 });
  // 50 tokens (49 patches and the class token): a layer merges at most 24.
  const options = await page.$$eval('#merge option', (o) => o.map((x) => x.value));
  assert.deepEqual(options, ['0', '1', '2', '3', '4', '6', '8', '12', '16', '24']);
  assert.equal(await page.isDisabled('#showRegions'), true);
  for (const r of ['8', '24']) {
    await page.evaluate(() => delete document.body.dataset.result);
    await page.selectOption('#merge', r);
    await page.waitForSelector(`body[data-merge="${r}"][data-result]`, { timeout: 120_000 });
    const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', '--merge', r, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const left = native.results[0].tokens_left;
    assert.equal(await page.textContent('#predictions li:first-child .label'), native.results[0].top[0].label, `merge ${r}`);
    assert.equal(await page.textContent('#mergeNote'), `50 tokens in, ${left} after the last of 4 layers`);
    assert.match(await page.textContent('#latency'), new RegExp(`merging ${r} tokens per layer`));
    // The merged regions: one per token entering the last layer (where the attention map is
    // taken) but the class token, as the native plan counts them.
    const info = execFileSync(NATIVE, ['info', '--merge', r], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const last = Number(/layer +3: +(\d+) tokens in/.exec(info)[1]);
    await page.check('#showRegions');
    assert.equal(await page.getAttribute('#heat', 'data-regions'), String(last - 1), `merge ${r}: regions`);
    if (r === '8') await page.screenshot({ path: join(SHOTS, 'demo-merge.png') });
    await page.uncheck('#showRegions');
    assert.equal(await page.getAttribute('#heat', 'data-regions'), null);
  }
  await page.evaluate(() => delete document.body.dataset.result);
  await page.selectOption('#merge', '0');
  await page.waitForSelector('body[data-merge="0"][data-result]', { timeout: 120_000 });
  assert.equal(await page.textContent('#predictions li:first-child .label'), nativeTop1(file));
  assert.equal(await page.isDisabled('#showRegions'), true);
  assert.equal(await page.isHidden('#error'), true);
});

test('bad files give a readable message and the page stays usable', { timeout: 300_000 }, async () => {
  await dropFile(null, 'empty.png', 'image/png');
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /empty/);

  await dropFile(join(ROOT, 'Cargo.toml'), 'paper.pdf', 'application/pdf');
  await page.waitForFunction(() => /not an image/.test(document.getElementById('error').textContent));

  // A checkpoint without config.json, through the file picker path.
  await page.selectOption('#modelKind', 'files');
  await page.setInputFiles('#ckptFiles', [join(ROOT, 'tests/fixtures/vit-classifier/model.safetensors')]);
  await page.click('#loadBtn');
  await page.waitForFunction(() => /config\.json/.test(document.getElementById('error').textContent));

  // Still usable: the next drop works.
  const file = join(ROOT, 'models/fashion-vit/samples/0002-trouser.png');
  await dropFile(file, 'trouser.png', 'image/png');
  await page.waitForSelector('body[data-result]', { timeout: 120_000 });
  assert.equal(await page.textContent('#predictions li:first-child .label'), nativeTop1(file));
  assert.equal(await page.isHidden('#error'), true);
  await page.screenshot({ path: join(SHOTS, 'demo-after-errors.png') });
});

test('a dropped checkpoint replaces the model', { timeout: 300_000 }, async () => {
  const dir = join(ROOT, 'tests/fixtures/vit-classifier');
  await page.selectOption('#modelKind', 'files');
  await page.setInputFiles('#ckptFiles', ['config.json', 'model.safetensors', 'preprocessor_config.json'].map((f) => join(dir, f)));
  await page.click('#loadBtn');
  await page.waitForFunction(() => /vit-classifier|dropped checkpoint/.test(document.getElementById('modelName').textContent), null, { timeout: 120_000 });
  const photo = join(ROOT, 'tests/fixtures/photos/chelsea.png');
  await dropFile(photo, 'chelsea.png', 'image/png');
  await page.waitForSelector('body[data-result]', { timeout: 120_000 });
  const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', '--model', dir, photo], { encoding: 'utf8' }));
  assert.equal(await page.textContent('#predictions li:first-child .label'), native.results[0].top[0].label);
});

test('depth mode: a Depth Anything checkpoint, a dropped photo, its depth map beside it, on WebGPU and the CPU backend', { timeout: 300_000 }, async () => {
  const dir = join(ROOT, 'tests/fixtures/depth/depth-anything-v1');
  const photo = join(ROOT, 'tests/fixtures/photos/chelsea.png');
  const native = JSON.parse(execFileSync(NATIVE, ['depth', '--json', '--model', dir, '--out', join(SHOTS, 'depth-native'), photo], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).results[0];
  const url = (device) => `${server.url}/demo/?device=${device}`;
  for (const [device, shot] of [['webgpu', 'demo-depth.png'], ['cpu', 'demo-depth-cpu.png']]) {
    const on = page;
    if (device !== 'webgpu') {
      // The same page on the CPU backend (the embedded model from the Cache API, not the network).
      await page.goto(url(device));
      await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    }
    await on.selectOption('#modelKind', 'files');
    await on.setInputFiles('#ckptFiles', ['config.json', 'model.safetensors', 'preprocessor_config.json'].map((f) => join(dir, f)));
    await on.click('#loadBtn');
    await on.waitForSelector('body[data-mode="depth"]', { timeout: 120_000 });
    await on.waitForFunction(() => /relative depth/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
    assert.equal(await on.isHidden('#heatRow'), true);
    assert.equal(await on.isHidden('#mergeRow'), true);
    await dropFile(photo, 'chelsea.png', 'image/png', on);
    await on.waitForSelector('body[data-result="depth"]', { timeout: 120_000 });
    // The map at the photo's size, its range the CLI's, on a 5x8 grid (70x112).
    const size = await on.evaluate(() => [document.getElementById('depthCanvas').width, document.getElementById('depthCanvas').height]);
    assert.deepEqual(size, [native.width, native.height]);
    const note = await on.textContent('#depthNote');
    assert.ok(note.includes(`${native.min.toFixed(2)} to ${native.max.toFixed(2)}`), `${note} vs the CLI's ${native.min}..${native.max}`);
    assert.ok(note.includes('ran at 112×70'), note);
    assert.equal(await on.getAttribute('body', 'data-grid'), '5x8');
    assert.match(await on.textContent('#latency'), /ms \(depth at 112×70/);
    assert.notEqual((await on.textContent('#adapter')).trim(), '–');
    assert.equal(await on.isHidden('#error'), true);
    await on.screenshot({ path: join(SHOTS, shot) });
  }
  // Back to WebGPU and the embedded classifier for the tests after this one.
  await page.goto(url('webgpu'));
  await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
});

// The load the click starts has finished (the button is enabled again and the page says Ready).
const loaded = () => page.waitForFunction(() => !document.getElementById('loadBtn').disabled && /^Ready/.test(document.getElementById('status').textContent), null, { timeout: 180_000 });

test('the page recovers from a GPU device loss without a reload', { timeout: 300_000 }, async () => {
  await page.selectOption('#modelKind', 'default');
  await page.click('#loadBtn');
  await loaded();
  await page.evaluate(() => document.body.removeAttribute('data-result'));
  // Simulate a reset: destroy the device under the page's engine.
  await page.evaluate(() => window.__tessera.engine().destroy());
  assert.equal(await page.evaluate(() => window.__tessera.engine().lost), true);
  const file = join(ROOT, 'models/fashion-vit/samples/0018-bag.png');
  await dropFile(file, 'bag.png', 'image/png');
  await page.waitForSelector('body[data-result]', { timeout: 180_000 });
  assert.equal(await page.textContent('#predictions li:first-child .label'), nativeTop1(file));
  assert.equal(await page.evaluate(() => window.__tessera.engine().lost), false, 'the page runs on a new device');
  assert.equal(await page.isHidden('#error'), true);
});

test('a GPU reset while the model loads, and an image dropped meanwhile: the page reconnects, loads and runs it', { timeout: 300_000 }, async () => {
  await page.selectOption('#modelKind', 'default');
  await page.evaluate(() => document.body.removeAttribute('data-result'));
  // Hold the reconnect open until the image has been dropped: the page has no model then.
  await page.evaluate(() => {
    const T = window.__tessera.Tessera;
    const create = T.create;
    window.__release = null;
    T.create = async (...args) => {
      await new Promise((resolve) => { window.__release = resolve; });
      T.create = create;
      return create.apply(T, args);
    };
  });
  // The click starts the load; the device goes while it runs.
  await page.evaluate(() => {
    document.getElementById('loadBtn').click();
    window.__tessera.engine().destroy();
  });
  await page.waitForFunction(() => window.__release !== null, null, { timeout: 120_000 });
  assert.match(await page.textContent('#status'), /reconnecting/);
  const file = join(ROOT, 'models/fashion-vit/samples/0018-bag.png');
  await dropFile(file, 'bag.png', 'image/png');
  assert.match(await page.textContent('#status'), /runs when the model is ready/);
  assert.equal(await page.isHidden('#error'), true, await page.textContent('#error'));
  await page.evaluate(() => window.__release());
  await page.waitForSelector('body[data-result]', { timeout: 120_000 }).catch(async (e) => {
    throw new Error(`${e.message}; status: ${await page.textContent('#status')}; error: ${await page.textContent('#error')}`);
  });
  assert.equal(await page.textContent('#predictions li:first-child .label'), nativeTop1(file));
  assert.equal(await page.evaluate(() => window.__tessera.engine().lost), false, 'the page runs on a new device');
  assert.equal(await page.isHidden('#error'), true, await page.textContent('#error'));
  assert.match(await page.textContent('#modelName'), /Fashion-MNIST/);
});

test('a reload takes the weights from the Cache API, not the network', { timeout: 300_000 }, async () => {
  const weights = () => server.requests.filter((r) => r.endsWith('/models/fashion-vit/model.safetensors')).length;
  assert.equal(weights(), 1, 'the first visit downloads the weights once');
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
  assert.equal(weights(), 1, 'the reload downloaded the weights again');
});

test('zero-shot mode: a CLIP model, typed labels, a dropped photo: the same top label as the CLI', { timeout: 300_000 }, async () => {
  const dir = 'tests/fixtures/clip/clip-zero-shot';
  const labels = 'cat, dog, cup of coffee, café ☕';
  await page.selectOption('#modelKind', 'clip');
  assert.equal(await page.isVisible('#labels'), true);
  await page.fill('#clipSource', `/${dir}`);
  await page.fill('#labels', labels);
  await page.click('#loadBtn');
  await page.waitForFunction(() => /^CLIP/.test(document.getElementById('modelName').textContent), null, { timeout: 180_000 });
  const photo = join(ROOT, 'tests/fixtures/photos/chelsea.png');
  await dropFile(photo, 'chelsea.png', 'image/png');
  await page.waitForSelector('body[data-result]', { timeout: 180_000 });
  const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', '--model', join(ROOT, dir), '--labels', labels.split(', ').join(','), photo], { encoding: 'utf8' }));
  assert.equal(await page.textContent('#predictions li:first-child .label'), native.results[0].top[0].label);
  assert.equal(await page.locator('#predictions li').count(), 4);
  await page.screenshot({ path: join(SHOTS, 'demo-zero-shot.png') });
  // Back to an image classifier: its classes again.
  await page.selectOption('#modelKind', 'default');
  await page.click('#loadBtn');
  await page.waitForFunction(() => /Fashion-MNIST/.test(document.getElementById('modelName').textContent), null, { timeout: 120_000 });
});

test('zero-shot mode with a SigLIP model: sigmoid scores, the same top label and score as the CLI', { timeout: 300_000 }, async () => {
  const dir = 'tests/fixtures/siglip-zero-shot';
  const labels = 'cat, dog, cup of coffee';
  await page.selectOption('#modelKind', 'clip');
  await page.fill('#clipSource', `/${dir}`);
  await page.fill('#labels', labels);
  await page.click('#loadBtn');
  await page.waitForFunction(() => /^SigLIP/.test(document.getElementById('modelName').textContent), null, { timeout: 180_000 });
  assert.equal(await page.getAttribute('body', 'data-scores'), 'sigmoid');
  const photo = join(ROOT, 'tests/fixtures/photos/chelsea.png');
  await page.evaluate(() => delete document.body.dataset.result);
  await dropFile(photo, 'chelsea.png', 'image/png');
  await page.waitForSelector('body[data-result]', { timeout: 180_000 });
  const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', '--model', join(ROOT, dir), '--labels', labels.split(', ').join(','), photo], { encoding: 'utf8' }));
  const top = native.results[0].top[0];
  assert.equal(await page.textContent('#predictions li:first-child .label'), top.label);
  assert.equal(await page.textContent('#predictions li:first-child .score'), `${(top.score * 100).toFixed(1)}%`);
  assert.equal(await page.locator('#predictions li').count(), 3);
  await page.screenshot({ path: join(SHOTS, 'demo-zero-shot-siglip.png') });
  await page.selectOption('#modelKind', 'default');
  await page.click('#loadBtn');
  await page.waitForFunction(() => /Fashion-MNIST/.test(document.getElementById('modelName').textContent), null, { timeout: 120_000 });
});

test('zero-shot mode with a SigLIP 2 NaFlex model: a token budget, the grid each image got over the heatmap, the CLI\'s scores', { timeout: 300_000 }, async () => {
  const dir = 'tests/fixtures/siglip2/siglip2-model';
  const labels = 'cat, dog, cup of coffee';
  await page.selectOption('#modelKind', 'clip');
  await page.fill('#clipSource', `/${dir}`);
  await page.fill('#labels', labels);
  await page.click('#loadBtn');
  await page.waitForFunction(() => /^SigLIP 2 NaFlex/.test(document.getElementById('modelName').textContent), null, { timeout: 180_000 });
  assert.equal(await page.isVisible('#budgetRow'), true);
  assert.equal(await page.inputValue('#maxPatches'), '64', 'the checkpoint\'s own budget first');
  const cases = JSON.parse(readFileSync(join(ROOT, dir, 'cases.json'), 'utf8')).cases;
  const gridOf = (image, budget) => cases.find((c) => c.image === image && c.budget === budget).grid;
  const labelsArg = labels.split(', ').join(',');
  // The image on show at `budget`: the processor's grid, over the heatmap, and the CLI's scores.
  const check = async (image, budget) => {
    await page.waitForSelector('body[data-result]', { timeout: 180_000 });
    const [rows, cols] = gridOf(image, budget);
    assert.equal(await page.getAttribute('body', 'data-grid'), `${rows}x${cols}`, `${image} at ${budget}: the processor's grid`);
    assert.match(await page.textContent('#budgetNote'), new RegExp(`${rows}×${cols} grid, ${rows * cols} of ${budget} patches`));
    assert.equal(await page.getAttribute('#heat', 'data-drawn'), 'true');
    assert.match(await page.textContent('#heatWhose'), /pooling head/);
    const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', '--model', join(ROOT, dir), '--max-patches', String(budget), '--labels', labelsArg, join(ROOT, image)], { encoding: 'utf8' }));
    const top = native.results[0].top[0];
    assert.equal(await page.textContent('#predictions li:first-child .label'), top.label);
    assert.equal(await page.textContent('#predictions li:first-child .score'), `${(top.score * 100).toFixed(1)}%`);
  };
  const chelsea = 'tests/fixtures/photos/chelsea.png';
  const strip = 'tests/fixtures/siglip2/strip-600x32.png';
  await page.evaluate(() => delete document.body.dataset.result);
  await dropFile(join(ROOT, chelsea), 'chelsea.png', 'image/png');
  await check(chelsea, 64);
  // A new budget re-runs the image on show: its grid follows.
  await page.evaluate(() => delete document.body.dataset.result);
  await page.selectOption('#maxPatches', '16');
  await check(chelsea, 16);
  await page.evaluate(() => delete document.body.dataset.result);
  await dropFile(join(ROOT, strip), 'strip-600x32.png', 'image/png');
  await check(strip, 16);
  await page.screenshot({ path: join(SHOTS, 'demo-zero-shot-naflex.png') });
  await page.selectOption('#modelKind', 'default');
  await page.click('#loadBtn');
  await page.waitForFunction(() => /Fashion-MNIST/.test(document.getElementById('modelName').textContent), null, { timeout: 120_000 });
  assert.equal(await page.isVisible('#budgetRow'), false);
});

// The page served cross-origin isolated (as scripts/serve.py serves it) on the CPU backend: the
// model runs in two worker threads, the page says so, gives the native label, and its own thread
// stays free while a classification runs (the longest gap between 10 ms timer ticks is printed).
test('on the CPU backend of an isolated page the demo runs in worker threads and the page stays responsive', { timeout: 300_000 }, async () => {
  const iso = await serve(ROOT, { isolated: true });
  const p = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  try {
    await p.goto(`${iso.url}/demo/?device=cpu&threads=2`);
    await p.waitForSelector('body[data-ready="true"]', { timeout: 180_000 });
    const d = await p.evaluate(() => ({ ...document.body.dataset }));
    assert.equal(d.device, 'cpu');
    assert.equal(d.threads, '2');
    assert.equal(d.worker, 'true');
    assert.match(await p.textContent('#adapter'), /2 worker threads/);
    assert.match(await p.textContent('#deviceReason'), /2 threads: as asked/);
    const sample = '0009-sneaker.png';
    const file = join(ROOT, 'models/fashion-vit/samples', sample);
    await p.evaluate(() => {
      window.__gaps = [];
      let last = performance.now();
      window.__ticker = setInterval(() => {
        const now = performance.now();
        window.__gaps.push(now - last);
        last = now;
      }, 10);
    });
    await dropFile(file, sample, 'image/png', p);
    await p.waitForSelector('body[data-result]', { timeout: 120_000 });
    const gaps = await p.evaluate(() => {
      clearInterval(window.__ticker);
      return window.__gaps;
    });
    assert.equal(await p.textContent('#predictions li:first-child .label'), nativeTop1(file));
    console.log(`demo on 2 worker threads: ${gaps.length} timer ticks during the drop and classification, longest gap ${Math.max(...gaps).toFixed(0)} ms; ${await p.textContent('#latency')}`);
    await p.screenshot({ path: join(SHOTS, 'demo-cpu-threads.png') });
    assert.deepEqual(errors, []);
  } finally {
    await p.close();
    await iso.close();
  }
});

test('no console errors', () => {
  assert.deepEqual(consoleErrors, []);
});
