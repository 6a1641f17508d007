// The npm tarball as a user gets it: `npm pack`, installed into a fresh project, then used from
// a plain ESM page (import map) and from an app bundled by Vite, each classifying a sample in
// headless Chromium with the same top-1 label as the native CLI, on the page's thread and on two
// worker threads (the page served cross-origin isolated).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT, NATIVE, serve, launch } from './harness.mjs';

const SAMPLE = join(ROOT, 'models/fashion-vit/samples/0008-sandal.png');
let project;
let browser;
let expected;

const APP = `
import { Tessera } from 'tessera-vit';
const engine = await Tessera.create();
const model = await engine.load(new URL('./model', location.href).href);
const blob = await (await fetch('./sample.png')).blob();
const top = await model.classify(blob, { topK: 3 });
const threaded = await Tessera.create({ device: 'cpu', threads: 2 });
const again = await (await threaded.load(new URL('./model', location.href).href)).classify(blob, { topK: 3 });
document.body.dataset.threads = threaded.adapterInfo.threads;
document.body.dataset.top1Threads = again[0].label;
document.body.dataset.top1 = top[0].label;
`;

before(async () => {
  expected = JSON.parse(execFileSync(NATIVE, ['classify', '--json', '--top', '1', SAMPLE], { encoding: 'utf8' })).results[0].top[0].label;
  const dir = mkdtempSync(join(tmpdir(), 'tessera-pack-'));
  execFileSync('npm', ['pack', '--pack-destination', dir], { cwd: join(ROOT, 'web'), stdio: 'pipe' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'npm pack made no tarball');
  const kb = statSync(join(dir, tarball)).size / 1024;
  console.log(`tarball ${tarball}: ${kb.toFixed(0)} KiB`);
  project = join(dir, 'app');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', join(dir, tarball)], { cwd: project, stdio: 'pipe' });
  mkdirSync(join(project, 'model'));
  for (const f of ['config.json', 'model.safetensors', 'preprocessor_config.json']) {
    cpSync(join(ROOT, 'models/fashion-vit', f), join(project, 'model', f));
  }
  cpSync(SAMPLE, join(project, 'sample.png'));
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

async function top1(dir) {
  const server = await serve(dir, { isolated: true });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/`);
    await page.waitForSelector('body[data-top1]', { state: 'attached', timeout: 180_000 });
    assert.deepEqual(errors, []);
    const d = await page.evaluate(() => ({ ...document.body.dataset }));
    assert.equal(d.threads, '2');
    assert.equal(d.top1Threads, d.top1, 'the same top-1 on two worker threads');
    return d.top1;
  } finally {
    await server.close();
  }
}

test('the installed tarball works as a plain ES module', { timeout: 300_000 }, async () => {
  writeFileSync(join(project, 'index.html'), `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="importmap">{"imports": {"tessera-vit": "./node_modules/tessera-vit/index.js"}}</script></head>
<body><script type="module">${APP}</script></body></html>`);
  assert.equal(await top1(project), expected);
});

test('the installed tarball works bundled by Vite', { timeout: 300_000 }, async () => {
  const vite = join(ROOT, 'node_modules/.bin/vite');
  const src = join(project, 'vite-app');
  mkdirSync(join(src, 'public/model'), { recursive: true });
  writeFileSync(join(src, 'index.html'), '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body><script type="module" src="./main.js"></script></body></html>');
  writeFileSync(join(src, 'main.js'), APP);
  for (const f of ['config.json', 'model.safetensors', 'preprocessor_config.json']) {
    cpSync(join(project, 'model', f), join(src, 'public/model', f));
  }
  cpSync(SAMPLE, join(src, 'public/sample.png'));
  execFileSync(vite, ['build', '--logLevel', 'warn', '--base', './'], { cwd: src, stdio: 'pipe', env: { ...process.env, NODE_PATH: join(project, 'node_modules') } });
  const dist = join(src, 'dist');
  const assets = readdirSync(join(dist, 'assets'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `Vite emitted no .wasm: ${assets}`);
  assert.equal(await top1(dist), expected);
});
