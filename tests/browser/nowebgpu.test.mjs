// Without WebGPU (Chromium started without --enable-unsafe-webgpu has no adapter headless), the
// package runs on the CPU backend (WebAssembly SIMD): the demo classifies a sample with the same
// top-1 label as the native CLI, shows the heatmap, and says it runs on the CPU and why; the API's
// `auto` choice lands on the CPU, and insisting on WebGPU rejects with kind `no_webgpu`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { CHROMIUM, NATIVE, ROOT, serve } from './harness.mjs';

test('without WebGPU the demo and the API run on the CPU backend', { timeout: 300_000 }, async () => {
  const server = await serve();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/demo/`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
    assert.equal(await page.getAttribute('body', 'data-device'), 'cpu');
    assert.ok(await page.isHidden('#unsupported'), 'no banner blocks the page');
    assert.match(await page.textContent('#adapter'), /CPU/);
    assert.match(await page.textContent('#deviceReason'), /WebGPU/);
    // Click a sample: the same top-1 label as natively.
    const sample = '0009-sneaker.png';
    await page.click(`#samples button:nth-child(7)`);
    await page.waitForSelector('body[data-result]', { timeout: 120_000 });
    const shown = await page.textContent('#predictions li:first-child .label');
    const native = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', join(ROOT, 'models/fashion-vit/samples', sample)], { encoding: 'utf8' }));
    assert.equal(shown, native.results[0].top[0].label);
    assert.equal(await page.evaluate(() => document.getElementById('heat').dataset.drawn), 'true');
    mkdirSync(join(ROOT, 'target/browser'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'target/browser/demo-cpu.png') });
    assert.deepEqual(errors, []);

    await page.goto(`${server.url}/tests/browser/blank.html`);
    const r = await page.evaluate(async () => {
      const { Tessera } = await import('/web/index.js');
      const engine = await Tessera.create();
      let webgpu = null;
      try {
        await Tessera.create({ device: 'webgpu' });
      } catch (err) {
        webgpu = { kind: err.kind, message: err.message };
      }
      return { device: engine.device, reason: engine.deviceReason, info: engine.adapterInfo, webgpu };
    });
    assert.equal(r.device, 'cpu', JSON.stringify(r));
    // Chromium validates relaxed SIMD: the package takes that build of its WebAssembly SIMD.
    assert.equal(r.info.isa, 'simd128+relaxed', 'the package is built with WebAssembly SIMD, relaxed where the browser has it');
    assert.ok(r.webgpu, 'insisting on WebGPU must reject');
    assert.equal(r.webgpu.kind, 'no_webgpu', r.webgpu.message);
    assert.doesNotMatch(r.webgpu.message, /apt-get|Mesa/, r.webgpu.message);
  } finally {
    await browser.close();
    await server.close();
  }
});
