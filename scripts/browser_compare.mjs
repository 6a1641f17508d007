// The browser comparison: tessera's package on its CPU backend (WebAssembly SIMD) against ONNX
// Runtime Web's wasm backend, same models, same thread count, in the same headless Chromium.
// For each model: the cold start (a fresh page: from the checkpoint's bytes in memory to the
// first result, the wasm compiled and the model loaded on the way), then the median ms per run of
// a batch-1 224x224 input (`--size WxH` for another) over `--iters` runs after warm-up; the two
// engines alternated.
//
// Needs the checkpoints and ONNX files that scripts/cpu_compare.py writes with --keep DIR, the
// package built (scripts/build_web.sh) and onnxruntime-web installed somewhere (npm i
// onnxruntime-web in a scratch folder; its dist/ folder is given with --ort):
//
//   node scripts/browser_compare.mjs --work DIR --ort /path/to/node_modules/onnxruntime-web/dist \
//        [--models deit-ti16,deit-s16] [--threads 1] [--iters 10] [--builds relaxed,simd128]
//
// --int8: the int8 forms instead: the checkpoint that `tessera quantize --bits 8` wrote
// (cpu_compare.py --int8 --keep) run with { int8: true }, against ONNX Runtime Web on the
// dynamically quantized model (`quantize_dynamic`, what transformers.js ships as "q8").
//
// --builds: tessera's wasm builds to time, each on its own page: `relaxed` (the relaxed-SIMD build,
// what the package loads where the browser has relaxed SIMD) and `simd128` (`relaxedSimd: false`).
//
// --webgpu: both engines on WebGPU instead (tessera `device: 'webgpu'`, ONNX Runtime Web's webgpu
// execution provider), on whatever adapter Chromium gives (SwiftShader where there is no GPU).
//
// --threads N: both engines on N threads (tessera: `Tessera.create({ threads: N })`, worker threads
// splitting every product; ONNX Runtime Web: `env.wasm.numThreads`). The page is cross-origin
// isolated. tessera's memory is printed too: the wasm heaps of the page and of every worker, and
// the exchange buffer, after the runs (the high-water mark: a wasm heap never shrinks).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const WORK = resolve(args.work || '');
const ORT = resolve(args.ort || '');
const MODELS = (args.models || 'deit-ti16,deit-s16').split(',');
const THREADS = Number(args.threads || 1);
const ITERS = Number(args.iters || 10);
const ROUNDS = Number(args.rounds || 2);
const BUILDS = (args.builds || 'relaxed').split(',');
const INT8 = 'int8' in args;
const WEBGPU = 'webgpu' in args;
const [W, H] = (args.size || '224x224').split('x').map(Number);
const SUFFIX = INT8 ? '-int8' : '';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm' };

// /web/, /demo/... from the repository; /work/ the models; /ort/ ONNX Runtime Web. Cross-origin
// isolated, so that ONNX Runtime may use threads where asked.
function serve() {
  const roots = [['/work/', WORK], ['/ort/', ORT], ['/', ROOT]];
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      const [prefix, dir] = roots.find(([p]) => path.startsWith(p));
      const file = normalize(join(dir, path.slice(prefix.length)));
      if (!file.startsWith(dir)) throw new Error('outside');
      const body = (await stat(file)).isDirectory() ? Buffer.from('<!doctype html><title>bench</title>') : await readFile(file);
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] || 'text/html',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
      });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() })));
}

async function tessera(page, name, build) {
  return page.evaluate(async ({ name, iters, relaxedSimd, int8, threads, H, W, webgpu }) => {
    const get = async (f) => new Uint8Array(await (await fetch(`/work/${name}/${f}`)).arrayBuffer());
    const files = { name, config: await get('config.json'), weights: await get('model.safetensors') };
    const px = new Float32Array(3 * H * W).map((_, i) => Math.sin(i));
    const t0 = performance.now();
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create(webgpu ? { device: 'webgpu' } : { device: 'cpu', relaxedSimd, threads });
    const model = await engine.load(files, { int8 });
    await model.run(px, [1, 3, H, W]);
    const cold = performance.now() - t0;
    for (let i = 0; i < 2; i++) await model.run(px, [1, 3, H, W]);
    const times = [];
    for (let i = 0; i < iters; i++) {
      const t = performance.now();
      await model.run(px, [1, 3, H, W]);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    if (webgpu) {
      const info = `${engine.adapterInfo.name} (${engine.adapterInfo.deviceType ?? 'WebGPU'})`;
      engine.close?.();
      return { cold, ms: times[Math.floor(times.length / 2)], mem: 0, info };
    }
    const m = engine.memory;
    const mem = m.wasmBytes + m.exchangeBytes;
    const info = `${engine.adapterInfo.name}, ${engine.adapterInfo.isa}; memory ${(mem / 2 ** 20).toFixed(1)} MiB (page ${(m.pageWasmBytes / 2 ** 20).toFixed(1)}, workers ${m.workerWasmBytes.map((b) => (b / 2 ** 20).toFixed(1)).join(' + ') || '-'}, exchange ${(m.exchangeBytes / 2 ** 20).toFixed(1)})`;
    engine.close();
    return { cold, ms: times[Math.floor(times.length / 2)], mem, info };
  }, { name: name + SUFFIX, iters: ITERS, relaxedSimd: build === 'relaxed', int8: INT8, threads: THREADS, H, W, webgpu: WEBGPU });
}

async function ortWeb(page, name) {
  return page.evaluate(async ({ name, iters, threads, H, W, webgpu }) => {
    const bytes = new Uint8Array(await (await fetch(`/work/${name}.onnx`)).arrayBuffer());
    const t0 = performance.now();
    const ort = await import(webgpu ? '/ort/ort.webgpu.min.mjs' : '/ort/ort.wasm.min.mjs');
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = '/ort/';
    const session = await ort.InferenceSession.create(bytes, { executionProviders: [webgpu ? 'webgpu' : 'wasm'] });
    const px = new Float32Array(3 * H * W).map((_, i) => Math.sin(i));
    const feeds = { pixel_values: new ort.Tensor('float32', px, [1, 3, H, W]) };
    await session.run(feeds);
    const cold = performance.now() - t0;
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const times = [];
    for (let i = 0; i < iters; i++) {
      const t = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return { cold, ms: times[Math.floor(times.length / 2)], info: `ONNX Runtime Web ${ort.env.versions?.web ?? ''}` };
  }, { name: name + SUFFIX, iters: ITERS, threads: THREADS, H, W, webgpu: WEBGPU });
}

const server = await serve();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', ...(WEBGPU ? ['--enable-unsafe-webgpu'] : [])],
});
const version = browser.version();
const rows = [];
try {
  for (const name of MODELS) {
    const engines = [...BUILDS.map((b) => [`tessera ${b}`, (page) => tessera(page, name, b)]), ['ort', (page) => ortWeb(page, name)]];
    const best = Object.fromEntries(engines.map(([key]) => [key, { cold: Infinity, ms: Infinity }]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const [key, fn] of engines) {
        const page = await browser.newPage();
        await page.goto(`${server.url}/work/`);
        const got = await fn(page);
        await page.close();
        best[key] = { cold: Math.min(best[key].cold, got.cold), ms: Math.min(best[key].ms, got.ms), mem: Math.max(best[key].mem ?? 0, got.mem ?? 0) };
        console.error(`${name} ${key}: cold ${got.cold.toFixed(0)} ms, run ${got.ms.toFixed(1)} ms (${got.info})`);
      }
    }
    rows.push([name, best]);
  }
} finally {
  await browser.close();
  server.close();
}
console.log(`Chromium ${version}, headless, ${WEBGPU ? 'WebGPU for both engines' : `${THREADS} thread(s) for both engines`}${INT8 ? '; int8 models (tessera --bits 8 with int8 arithmetic, ONNX Runtime quantize_dynamic)' : ''}; ${new Date().toISOString().slice(0, 10)}. Median ms per batch-1 ${W}x${H} run of ${ITERS} after warm-up, the best of ${ROUNDS} alternated rounds; cold start = from the checkpoint's bytes in memory to the first result on a fresh page (wasm compiled, model loaded).\n`);
const keys = BUILDS.map((b) => `tessera ${b}`);
console.log(`| model | ${keys.map((k) => `${k} ms`).join(' | ')} | ONNX Runtime Web (${WEBGPU ? 'webgpu' : 'wasm'}) ms | ${keys.map((k) => `${k} / ORT Web`).join(' | ')} | ${keys.map((k) => `${k} cold start ms`).join(' | ')} | ORT Web cold start ms | ${keys.map((k) => `${k} memory MiB`).join(' | ')} |`);
console.log(`| --- | ${[...keys, 'ort', ...keys, ...keys, 'ort', ...keys].map(() => '---:').join(' | ')} |`);
for (const [name, b] of rows) {
  const cells = [...keys.map((k) => b[k].ms.toFixed(1)), b.ort.ms.toFixed(1), ...keys.map((k) => `${(b[k].ms / b.ort.ms).toFixed(2)}x`), ...keys.map((k) => b[k].cold.toFixed(0)), b.ort.cold.toFixed(0), ...keys.map((k) => (b[k].mem / 2 ** 20).toFixed(1))];
  console.log(`| ${name} | ${cells.join(' | ')} |`);
}
