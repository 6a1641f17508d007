// Float against quantized checkpoints in headless Chromium: for each checkpoint folder (served
// from the repository, e.g. ones written by `tessera quantize` under target/), the bytes of its
// model.safetensors, the time from `engine.load(url)` to a loaded model (download from the local
// server included, the Cache API off), the weights the engine holds, and the median ms per
// batch-1 run over `--iters` runs after two warm-up runs; the checkpoints alternated round by
// round. Needs the package built (scripts/build_web.sh) and playwright's Chromium:
//
//   node scripts/browser_quant_bench.mjs --models target/qb/deit-ti16,target/qb/deit-ti16-int8 \
//        [--device cpu|webgpu] [--iters 10] [--rounds 2]
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch } from '../tests/browser/harness.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const MODELS = (args.models || '').split(',').filter(Boolean);
const DEVICE = args.device || 'cpu';
const ITERS = Number(args.iters || 10);
const ROUNDS = Number(args.rounds || 2);
if (MODELS.length === 0) {
  console.error('usage: node scripts/browser_quant_bench.mjs --models DIR,DIR [--device cpu|webgpu] [--iters N] [--rounds N]');
  process.exit(2);
}

const server = await serve();
const browser = await launch();
const page = await browser.newPage();
await page.goto(`${server.url}/tests/browser/blank.html`);
const info = await page.evaluate(async (device) => {
  const { Tessera } = await import('/web/index.js');
  window.engine = await Tessera.create({ device });
  return window.engine.adapterInfo;
}, DEVICE);
console.log(`# ${DEVICE}: ${info.name}, Chromium ${browser.version()}`);

const results = Object.fromEntries(MODELS.map((m) => [m, { load: [], run: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  for (const m of MODELS) {
    const r = await page.evaluate(async ({ url, iters }) => {
      const t0 = performance.now();
      const model = await window.engine.load(url, { cache: false });
      const load = performance.now() - t0;
      const [h, w] = model.info.imageSize;
      const px = new Float32Array(3 * h * w).map((_, i) => Math.sin(i * 0.01));
      for (let i = 0; i < 2; i++) await model.run(px, [1, 3, h, w]);
      const times = [];
      for (let i = 0; i < iters; i++) {
        const t = performance.now();
        await model.run(px, [1, 3, h, w]);
        times.push(performance.now() - t);
      }
      const out = { load, times, weightBytes: model.info.weightBytes, quantization: model.info.quantization };
      model.dispose();
      return out;
    }, { url: `/${m}`, iters: ITERS });
    results[m].load.push(r.load);
    results[m].run.push(...r.times);
    results[m].weightBytes = r.weightBytes;
    results[m].quantization = r.quantization;
  }
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log('| checkpoint | file | weights held | load (download + upload) | ms per batch-1 run (median) |');
console.log('| --- | --- | --- | --- | --- |');
for (const m of MODELS) {
  const r = results[m];
  const file = statSync(join(ROOT, m, 'model.safetensors')).size;
  const q = r.quantization ? ` (int${r.quantization.bits}${r.quantization.groupSize ? `, groups of ${r.quantization.groupSize}` : ''})` : ' (f32)';
  console.log(`| ${m}${q} | ${(file / 1e6).toFixed(1)} MB | ${(r.weightBytes / 1e6).toFixed(1)} MB | ${median(r.load).toFixed(0)} ms | ${median(r.run).toFixed(1)} |`);
}
await browser.close();
await server.close();
