// Without WebGPU (Chromium started without --enable-unsafe-webgpu has no adapter headless), the
// demo says so plainly instead of failing silently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM, serve } from './harness.mjs';

test('the demo explains when WebGPU is unavailable', { timeout: 120_000 }, async () => {
  const server = await serve();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/demo/`);
    await page.waitForSelector('#unsupported:not([hidden])', { timeout: 60_000 });
    const text = await page.textContent('#unsupported');
    assert.match(text, /WebGPU|adapter/i);
    assert.ok(text.length > 30, text);
    assert.doesNotMatch(text, /apt-get|Mesa|lavapipe/, 'a browser user is not told to install Linux drivers');
    // The API rejects with the documented kind.
    await page.goto(`${server.url}/tests/browser/blank.html`);
    const e = await page.evaluate(async () => {
      const { Tessera } = await import('/web/index.js');
      try {
        await Tessera.create();
        return null;
      } catch (err) {
        return { kind: err.kind, message: err.message };
      }
    });
    assert.ok(e, 'Tessera.create() must reject without an adapter');
    assert.equal(e.kind, 'no_webgpu', e.message);
    assert.doesNotMatch(e.message, /apt-get|Mesa/, e.message);
  } finally {
    await browser.close();
    await server.close();
  }
});
