// The wasm API in headless Chromium, on both devices (WebGPU on SwiftShader, and the CPU backend in
// WebAssembly SIMD, on the page's thread and on two worker threads: the page is served
// cross-origin isolated): for each test checkpoint, `run` matches transformers' expected logits within
// 1e-4 and the native engine's output for the same input; errors reject with Error objects
// carrying a kind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT, NATIVE, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

let server;
let browser;
let page;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'web/pkg/tessera_bg.wasm')), 'build the package first: bash scripts/build_web.sh');
  assert.ok(existsSync(NATIVE), 'build the native binary first: cargo build --release');
  server = await serve(ROOT, { isolated: true });
  browser = await launch();
  page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/tests/browser/blank.html`);
  const info = await page.evaluate(async () => {
    const { Tessera } = await import('/web/index.js');
    window.engine = await Tessera.create({ device: 'webgpu' });
    window.cpuEngine = await Tessera.create({ device: 'cpu', threads: 1 });
    window.cpu2Engine = await Tessera.create({ device: 'cpu', threads: 2 });
    const auto = await Tessera.create();
    return { webgpu: window.engine.adapterInfo, cpu: window.cpuEngine.adapterInfo, cpu2: [window.cpu2Engine.adapterInfo, window.cpu2Engine.deviceReason], auto: [auto.device, auto.deviceReason], isolated: crossOriginIsolated };
  });
  console.log(`browser devices: ${JSON.stringify(info)}`);
  assert.ok(info.webgpu.name !== undefined);
  assert.equal(info.cpu.backend, 'cpu');
  assert.equal(info.isolated, true);
  assert.equal(info.cpu.threads, 1);
  assert.equal(info.cpu2[0].threads, 2, info.cpu2[1]);
  assert.equal(info.cpu2[0].worker, true);
  // SwiftShader is a software fallback adapter: auto takes the CPU backend and says why.
  assert.equal(info.auto[0], 'cpu', info.auto[1]);
  assert.match(info.auto[1], /fallback|software/);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

// Each checkpoint at its own patch size, and at other patch sizes (the kernel PI-resized; the
// expected outputs from transformers models of that patch size, scripts/make_flexi_fixtures.py).
// Quantized checkpoints (compressed-tensors pack-quantized, tests/fixtures/quant) run the same way.
const FIXTURES = ['vit-classifier', 'vit-base-nobias-f16', 'deit-distilled-bf16', 'deit-classifier', 'dinov2-classifier', 'dinov2-base',
  'quant/vit-classifier-int8', 'quant/deit-distilled-int4', 'quant/dinov2-base-int4',
  'timm/vit-reg-avg', 'timm/vit-clip-prenorm', 'timm/deit-distilled', 'timm/flexivit-dynamic',
  'clip/clip-vision-projection', 'clip/clip-model', 'siglip/siglip-classifier', 'siglip/siglip-model', 'timm/vit-siglip-map'].map((f) => [f, null]);
const RESIZED = [['vit-classifier', 4], ['vit-classifier', 6], ['deit-distilled-bf16', 4], ['dinov2-classifier', 10], ['dinov2-base', 7], ['timm/vit-token', 4]];
// Where the expected outputs of a checkpoint at another patch size are (timm's made by timm).
const flexiPath = (fixture, patch) => (fixture.startsWith('timm/') ? `tests/fixtures/timm-flexi/${fixture.slice(5)}-p${patch}` : `tests/fixtures/flexi/${fixture}-p${patch}`);
for (const [device, [fixture, patch]] of ['webgpu', 'cpu', 'cpu2'].flatMap((d) => [...FIXTURES, ...RESIZED].map((f) => [d, f]))) {
  const label = patch ? `${fixture} at patch ${patch}` : fixture;
  test(`run ${label} on ${device} matches transformers and the native engine`, { timeout: 300_000 }, async () => {
    const dir = join(ROOT, 'tests/fixtures', fixture);
    const expDir = patch ? join(ROOT, flexiPath(fixture, patch)) : dir;
    const expected = readSafetensors(readFileSync(join(expDir, 'expected.safetensors')));
    const native = join(mkdtempSync(join(tmpdir(), 'tessera-native-')), 'out.safetensors');
    const patchArgs = patch ? ['--patch-size', String(patch)] : [];
    execFileSync(NATIVE, ['run', '--model', dir, ...patchArgs, '--pixels', join(expDir, 'expected.safetensors'), '--out', native], { stdio: 'pipe' });
    const nat = readSafetensors(readFileSync(native));
    const expUrl = patch ? `/${flexiPath(fixture, patch)}` : `/tests/fixtures/${fixture}`;
    const got = await page.evaluate(async ([name, device, patch, expUrl]) => {
      const { readTensor } = await import('/tests/browser/blank.js');
      const engine = { cpu: window.cpuEngine, cpu2: window.cpu2Engine }[device] ?? window.engine;
      const model = await engine.load(`/tests/fixtures/${name}`, { cache: false, patchSize: patch ?? undefined });
      const info = model.info;
      const pv = await readTensor(`${expUrl}/expected.safetensors`, 'pixel_values');
      const out = await model.run(pv.data, pv.dims);
      model.dispose();
      return {
        patchSize: info.patchSize,
        originalPatchSize: info.originalPatchSize,
        logits: out.logits ? Array.from(out.logits) : null,
        logitsDims: out.logitsDims ?? null,
        last: Array.from(out.lastHiddenState),
        lastDims: out.lastHiddenStateDims,
        pooler: out.poolerOutput ? Array.from(out.poolerOutput) : null,
        imageEmbeds: out.imageEmbeds ? Array.from(out.imageEmbeds) : null,
      };
    }, [fixture, device, patch, expUrl]);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const own = config.patch_size ?? config.vision_config?.patch_size ?? config.model_args.patch_size;
    assert.equal(got.originalPatchSize, own);
    assert.equal(got.patchSize, patch ?? own);
    assert.deepEqual(got.lastDims, expected.last_hidden_state.dims);
    const checks = [['last_hidden_state', got.last], ['logits', got.logits], ['pooler_output', got.pooler], ['image_embeds', got.imageEmbeds]];
    for (const [name, values] of checks) {
      if (!expected[name]) {
        assert.equal(values, null, `${fixture}: ${name} should be absent`);
        continue;
      }
      const vsRef = maxDiff(values, expected[name].data);
      const vsNative = maxDiff(values, nat[name].data);
      console.log(`${device} ${label} ${name}: max diff ${vsRef.toExponential(2)} vs the reference, ${vsNative.toExponential(2)} vs native`);
      assert.ok(vsRef <= 1e-4, `${device} ${label} ${name}: ${vsRef} from the reference (transformers or timm)`);
      assert.ok(vsNative <= 1e-4, `${device} ${label} ${name}: ${vsNative} from the native engine`);
    }
  });
}

// Int8 arithmetic in WebAssembly (the relaxed dot product, or the portable integer kernel): every quantized
// layer of the 8-bit fixtures runs it; the outputs stay within the activations' rounding of
// transformers (cosine > 0.999, the same top class) and near the native engine's int8 run.
for (const [fixture, engineName] of ['quant/vit-classifier-int8', 'quant/dinov2-classifier-int8'].flatMap((f) => [[f, 'cpuEngine'], [f, 'cpu2Engine']])) {
  test(`${fixture} in int8 arithmetic on the CPU backend (${engineName === 'cpuEngine' ? '1 thread' : '2 worker threads'})`, { timeout: 300_000 }, async () => {
    const dir = join(ROOT, 'tests/fixtures', fixture);
    const expected = readSafetensors(readFileSync(join(dir, 'expected.safetensors')));
    const got = await page.evaluate(async ([name, engineName]) => {
      const { readTensor } = await import('/tests/browser/blank.js');
      const engine = window[engineName];
      const model = await engine.load(`/tests/fixtures/${name}`, { cache: false, int8: true });
      const exact = await engine.load(`/tests/fixtures/${name}`, { cache: false });
      const pv = await readTensor(`/tests/fixtures/${name}/expected.safetensors`, 'pixel_values');
      const out = await model.run(pv.data, pv.dims);
      const r = { isa: engine.adapterInfo.isa, info: model.info.arithmetic, exactInfo: exact.info.arithmetic, last: Array.from(out.lastHiddenState), logits: out.logits ? Array.from(out.logits) : null, n: out.logitsDims?.[1] };
      model.dispose();
      exact.dispose();
      return r;
    }, [fixture, engineName]);
    assert.ok(got.info.quantizedLayers > 0 && got.info.int8Layers === got.info.quantizedLayers, JSON.stringify(got.info));
    // The relaxed-SIMD build's relaxed dot product, else simd128's widening products; the native
    // run takes the kernel of the same arithmetic (7-bit activations: AVX2's; 8-bit: portable).
    const relaxed = got.isa === 'simd128+relaxed';
    assert.equal(got.info.kernel, relaxed ? 'wasm-relaxed' : 'wasm-simd128', got.isa);
    const native = join(mkdtempSync(join(tmpdir(), 'tessera-native-')), 'out.safetensors');
    const env = { ...process.env, TESSERA_CPU_INT8: relaxed ? 'avx2' : 'portable' };
    execFileSync(NATIVE, ['--device', 'cpu', 'run', '--int8', '--model', dir, '--pixels', join(dir, 'expected.safetensors'), '--out', native], { stdio: 'pipe', env });
    const nat = readSafetensors(readFileSync(native));
    assert.equal(got.exactInfo.int8Layers, 0);
    const want = expected.last_hidden_state.data;
    let dot = 0, gg = 0, ww = 0;
    got.last.forEach((g, i) => { dot += g * want[i]; gg += g * g; ww += want[i] * want[i]; });
    const cos = dot / Math.sqrt(gg * ww);
    const vsNative = maxDiff(got.last, nat.last_hidden_state.data);
    console.log(`${fixture} int8 in wasm: cosine ${cos.toFixed(6)} to transformers, max diff ${vsNative.toExponential(2)} to the native int8 run`);
    assert.ok(cos > 0.999, `${fixture}: cosine ${cos}`);
    assert.ok(vsNative <= 0.05, `${fixture}: ${vsNative} from the native int8 run`);
    if (got.logits) {
      const argmax = (v) => v.indexOf(Math.max(...v));
      for (let i = 0; i * got.n < got.logits.length; i++) {
        assert.equal(argmax(got.logits.slice(i * got.n, (i + 1) * got.n)), argmax(Array.from(expected.logits.data.slice(i * got.n, (i + 1) * got.n))), `${fixture}: top class of image ${i}`);
      }
    }
  });
}

test('classify calls in flight at once give the serial results', { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async () => {
    const model = await window.engine.load('/models/fashion-vit', { cache: false });
    const names = ['0000-ankle-boot', '0001-pullover', '0002-trouser', '0004-shirt', '0006-coat', '0008-sandal'];
    const blobs = await Promise.all(names.map(async (n) => (await fetch(`/models/fashion-vit/samples/${n}.png`)).blob()));
    const serial = [];
    for (const b of blobs) serial.push(await model.classify(b, { topK: 3 }));
    const parallel = await Promise.all(blobs.map((b) => model.classify(b, { topK: 3 })));
    model.dispose();
    return { serial, parallel };
  });
  assert.deepEqual(r.parallel, r.serial);
});

test('after a device loss calls reject with device_lost, and a new engine works', { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async () => {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'webgpu' });
    const model = await engine.load('/models/fashion-vit', { cache: false });
    const blob = await (await fetch('/models/fashion-vit/samples/0009-sneaker.png')).blob();
    const before = await model.classify(blob);
    engine.destroy();
    let kind = null;
    try {
      await model.classify(blob);
    } catch (e) {
      kind = e.kind;
    }
    const engine2 = await Tessera.create({ device: 'webgpu' });
    const model2 = await engine2.load('/models/fashion-vit', { cache: false });
    const after = await model2.classify(blob);
    model2.dispose();
    return { kind, lost: engine.lost, before, after };
  });
  assert.equal(r.kind, 'device_lost');
  assert.equal(r.lost, true);
  assert.deepEqual(r.after, r.before);
});

test('a load and a call in flight when the device is lost settle with device_lost, never hang', { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async () => {
    const { Tessera } = await import('/web/index.js');
    const settle = (p) => Promise.race([p.then(() => 'resolved', (e) => e.kind), new Promise((done) => setTimeout(() => done('hung'), 60_000))]);
    const engine = await Tessera.create({ device: 'webgpu' });
    const loading = engine.load('/models/fashion-vit', { cache: false });
    engine.destroy();
    const load = await settle(loading);
    const engine2 = await Tessera.create({ device: 'webgpu' });
    const model = await engine2.load('/models/fashion-vit', { cache: false });
    const blob = await (await fetch('/models/fashion-vit/samples/0009-sneaker.png')).blob();
    const running = model.classify(blob);
    engine2.destroy();
    const call = await settle(running);
    return { load, call };
  });
  assert.deepEqual(r, { load: 'device_lost', call: 'device_lost' });
});

test('f16 storage matches transformers within 1e-2 where the adapter has shader-f16, and is refused otherwise', { timeout: 300_000 }, async () => {
  const expected = readSafetensors(readFileSync(join(ROOT, 'tests/fixtures/vit-classifier/expected.safetensors')));
  const r = await page.evaluate(async () => {
    const { readTensor } = await import('/tests/browser/blank.js');
    const f16 = window.engine.adapterInfo.shaderF16;
    try {
      const model = await window.engine.load('/tests/fixtures/vit-classifier', { cache: false, f16: true });
      const pv = await readTensor('/tests/fixtures/vit-classifier/expected.safetensors', 'pixel_values');
      const out = await model.run(pv.data, pv.dims);
      const bytes = model.info.weightBytes;
      model.dispose();
      return { f16, logits: Array.from(out.logits), bytes };
    } catch (e) {
      return { f16, kind: e.kind, message: e.message };
    }
  });
  console.log(`browser shader-f16: ${r.f16}; ${r.logits ? `f16 logits max diff ${maxDiff(r.logits, expected.logits.data).toExponential(2)}` : `refused: ${r.message}`}`);
  if (r.f16) {
    assert.ok(r.logits, r.message);
    const d = maxDiff(r.logits, expected.logits.data);
    assert.ok(d <= 1e-2 && d > 0, `f16 logits differ by ${d}`);
  } else {
    assert.equal(r.kind, 'unsupported_dtype', r.message);
    assert.match(r.message, /shader-f16/);
  }
});

// The embedded model quantized by the native CLI, served as a folder: loaded by URL (then from
// the Cache API without a download), the same top-1 as natively on every sample, and the
// engine's device memory smaller than for the float model by the weights' saving.
for (const device of ['webgpu', 'cpu', 'cpu2']) {
  test(`a quantized checkpoint loads from a URL and the Cache API on ${device}, classifies as natively, and holds less memory`, { timeout: 300_000 }, async () => {
    const rel = 'target/browser-quant/fashion-int4';
    const dir = join(ROOT, rel);
    execFileSync(NATIVE, ['quantize', '--model', 'embedded', '--bits', '4', '--out', dir, '--check-images', '0'], { stdio: 'pipe' });
    const samples = readdirSync(join(ROOT, 'models/fashion-vit/samples')).filter((f) => f.endsWith('.png')).slice(0, 6);
    const native = samples.map((f) => JSON.parse(execFileSync(NATIVE, ['--device', 'cpu', 'classify', '--json', '--top', '1', '--model', dir, join(ROOT, 'models/fashion-vit/samples', f)], { encoding: 'utf8' })).results[0].top[0].label);
    const weightsUrl = `/${rel}/model.safetensors`;
    const downloads = () => server.requests.filter((r) => r === weightsUrl).length;
    const before = downloads();
    const r = await page.evaluate(async ({ rel, samples, device }) => {
      const engine = { cpu: window.cpuEngine, cpu2: window.cpu2Engine }[device] ?? window.engine;
      await caches.delete('tessera-vit-v1');
      const base = engine.memory.gpuBytes;
      const float = await engine.load('/models/fashion-vit');
      const floatBytes = engine.memory.gpuBytes - base;
      const floatInfo = float.info;
      float.dispose();
      const progress = [];
      const first = await engine.load(`/${rel}`, { onProgress: (p) => progress.push(p) });
      const quantBytes = engine.memory.gpuBytes - base;
      const labels = [];
      for (const f of samples) {
        const blob = await (await fetch(`/models/fashion-vit/samples/${f}`)).blob();
        labels.push((await first.classify(blob, { topK: 1 }))[0].label);
      }
      const info = first.info;
      first.dispose();
      const again = [];
      const second = await engine.load(`/${rel}`, { onProgress: (p) => again.push(p) });
      second.dispose();
      return { labels, floatBytes, quantBytes, info, floatInfo, firstCached: progress.some((p) => p.cached), secondCached: again.filter((p) => p.file === 'model.safetensors').every((p) => p.cached) };
    }, { rel, samples, device });
    assert.deepEqual(r.labels, native, 'top-1 as natively');
    assert.deepEqual(r.info.quantization, { bits: 4, groupSize: 32 });
    assert.equal(r.floatInfo.quantization, null);
    assert.ok(r.info.weightBytes < r.floatInfo.weightBytes * 0.4, `weights ${r.info.weightBytes} against ${r.floatInfo.weightBytes}`);
    // The engine's memory drops by what the weights save (activations are the same for both).
    assert.ok(r.floatBytes - r.quantBytes >= (r.floatInfo.weightBytes - r.info.weightBytes) * 0.9, JSON.stringify(r));
    assert.equal(r.firstCached, false);
    assert.equal(r.secondCached, true);
    assert.equal(downloads() - before, 1, 'the second load came from the Cache API');
    console.log(`${device}: quantized embedded model ${r.info.weightBytes} bytes of weights (float ${r.floatInfo.weightBytes}); engine memory ${r.quantBytes} against ${r.floatBytes}`);
  });
}

for (const engineName of ['engine', 'cpu2Engine']) test(`every input of the hostile corpus rejects with its kind, as natively (${engineName === 'engine' ? 'WebGPU' : 'CPU on 2 worker threads'})`, { timeout: 300_000 }, async () => {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'tests/fixtures/hostile/manifest.json'), 'utf8'));
  const results = await page.evaluate(async ([manifest, engineName]) => {
    const engine = window[engineName];
    const get = async (path) => new Uint8Array(await (await fetch(path)).arrayBuffer());
    const base = `/${manifest.base}`;
    const [config, weights, preprocessor] = await Promise.all(['config.json', 'model.safetensors', 'preprocessor_config.json'].map((f) => get(`${base}/${f}`)));
    const model = await engine.load({ name: 'hostile', config, weights, preprocessor });
    const out = [];
    for (const c of manifest.cases) {
      const bytes = await get(`/tests/fixtures/hostile/${c.file}`);
      try {
        if (c.role === 'image' && c.preprocessor) {
          const other = await engine.load({ name: 'hostile', config, weights, preprocessor: await get(`/tests/fixtures/hostile/${c.preprocessor}`) });
          try {
            await other.classify(new File([bytes], c.file));
          } finally {
            other.dispose();
          }
        } else if (c.role === 'image') {
          await model.classify(new File([bytes], c.file));
        } else {
          // A case may replace a file of another checkpoint (the quantized cases).
          const own = c.base
            ? Object.fromEntries(await Promise.all([['config', 'config.json'], ['weights', 'model.safetensors'], ['preprocessor', 'preprocessor_config.json']].map(async ([k, f]) => [k, await get(`/${c.base}/${f}`)])))
            : { config, weights, preprocessor };
          const files = { name: 'hostile', ...own };
          files[c.role] = bytes;
          (await engine.load(files)).dispose();
        }
        out.push({ file: c.file, kind: 'ok', message: '' });
      } catch (e) {
        out.push({ file: c.file, kind: e.kind, message: e.message, isError: e instanceof Error });
      }
    }
    model.dispose();
    return { out, lost: engine.lost };
  }, [manifest, engineName]);
  assert.equal(results.lost, false);
  assert.equal(results.out.length, manifest.cases.length);
  for (const [i, c] of manifest.cases.entries()) {
    const r = results.out[i];
    assert.equal(r.kind, c.kind, `${c.file}: ${r.message}`);
    if (c.kind !== 'ok') {
      assert.ok(r.isError, `${c.file}: not an Error`);
      assert.ok(r.message.includes(c.needle), `${c.file}: \`${c.needle}\` not in: ${r.message}`);
    }
  }
  console.log(`hostile corpus: ${manifest.cases.length} inputs, each with its error kind in the browser`);
});

test('an autotuned engine gives transformers\' outputs', { timeout: 300_000 }, async () => {
  const expected = readSafetensors(readFileSync(join(ROOT, 'tests/fixtures/vit-classifier/expected.safetensors')));
  const r = await page.evaluate(async () => {
    const { Tessera } = await import('/web/index.js');
    const { readTensor } = await import('/tests/browser/blank.js');
    const engine = await Tessera.create({ tune: true, device: 'webgpu' });
    const model = await engine.load('/tests/fixtures/vit-classifier', { cache: false });
    const pv = await readTensor('/tests/fixtures/vit-classifier/expected.safetensors', 'pixel_values');
    const out = await model.run(pv.data, pv.dims);
    model.dispose();
    return { logits: Array.from(out.logits), tuning: engine.tuning, timestamps: engine.adapterInfo.timestampQuery };
  });
  console.log(`browser tuning: ${JSON.stringify(r.tuning)} (timestamp queries: ${r.timestamps})`);
  assert.equal(r.tuning.enabled, true);
  if (r.timestamps) {
    assert.ok(r.tuning.measured > 0, 'shapes were timed');
    const entries = Object.entries(r.tuning.choices);
    assert.equal(entries.length, r.tuning.measured);
    for (const [shape, e] of entries) {
      assert.ok(e.choice in e.ms, `${shape}: the choice was timed`);
      assert.equal(Math.min(...Object.values(e.ms)), e.ms[e.choice], `${shape}: the fastest was chosen`);
    }
  }
  assert.ok(maxDiff(r.logits, expected.logits.data) <= 1e-4);
});

test('errors reject with a kind and a message', { timeout: 120_000 }, async () => {
  const r = await page.evaluate(async () => {
    const results = {};
    const grab = async (key, f) => {
      try {
        await f();
        results[key] = 'resolved';
      } catch (e) {
        results[key] = { isError: e instanceof Error, kind: e.kind, message: e.message };
      }
    };
    await grab('missing', () => window.engine.load('/tests/fixtures/no-such-model', { cache: false }));
    await grab('garbage', () => window.engine.load({ config: new TextEncoder().encode('{"model_type": "vit"'), weights: new Uint8Array(16) }));
    const model = await window.engine.load('/tests/fixtures/vit-classifier', { cache: false });
    await grab('pdf', () => model.classify(new Blob([new TextEncoder().encode('%PDF-1.4')], { type: 'application/pdf' })));
    await grab('empty', () => model.classify(new File([], 'empty.png')));
    await grab('dims', () => model.run(new Float32Array(10), [1, 3, 32, 32]));
    model.dispose();
    await grab('disposed', () => model.classify(new File([new Uint8Array(4)], 'x.png')));
    await grab('patch0', () => window.engine.load('/tests/fixtures/vit-classifier', { cache: false, patchSize: 0 }));
    await grab('patchBig', () => window.engine.load('/tests/fixtures/vit-classifier', { cache: false, patchSize: 33 }));
    await grab('patchHalf', () => window.engine.load('/tests/fixtures/vit-classifier', { cache: false, patchSize: 2.5 }));
    return results;
  });
  assert.equal(r.missing.kind, 'not_found');
  assert.match(r.missing.message, /no-such-model\/config\.json/);
  assert.equal(r.garbage.kind, 'model');
  assert.match(r.garbage.message, /config\.json/);
  assert.equal(r.pdf.kind, 'image');
  assert.equal(r.empty.kind, 'image');
  assert.match(r.empty.message, /empty/);
  assert.equal(r.dims.kind, 'input');
  assert.equal(r.disposed.kind, 'disposed');
  assert.equal(r.patch0.kind, 'model');
  assert.match(r.patch0.message, /vit-classifier: patch size 0/);
  assert.equal(r.patchBig.kind, 'model');
  assert.match(r.patchBig.message, /patch size 33 is larger than the checkpoint's 32x32 image/);
  assert.equal(r.patchHalf.kind, 'input');
  for (const v of Object.values(r)) assert.equal(v.isError, true);
});
