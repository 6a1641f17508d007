// The text build (`tessera-vit/text`) in headless Chromium, on WebGPU (SwiftShader) and the CPU
// backend (on the page's thread and on two worker threads; the page is cross-origin isolated): a CLIPModel with its tokenizer.json loaded by URL gives transformers' zero-shot logits
// and text and image embeddings (tests/fixtures/clip/clip-zero-shot, within 1e-4); bad label lists
// reject with kinds; SiglipModels (tests/fixtures/siglip-zero-shot with a SigLIP 2 style
// tokenizer.json, padded on the left as its tokenizer class pads; siglip-spm-zero-shot with only
// a SentencePiece spiece.model) give SiglipModel's logits and sigmoids; the main build says CLIP
// needs the text build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, serve, launch, readSafetensors, maxDiff } from './harness.mjs';

let server;
let browser;
let page;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'web/pkg-text/tessera_text_bg.wasm')), 'build the package first: bash scripts/build_web.sh');
  server = await serve(ROOT, { isolated: true });
  browser = await launch();
  page = await browser.newPage();
  await page.goto(`${server.url}/tests/browser/blank.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const DIR = 'tests/fixtures/clip/clip-zero-shot';

for (const device of ['webgpu', 'cpu', 'cpu2']) {
  test(`CLIP zero-shot and embeddings on ${device} match transformers`, { timeout: 300_000 }, async () => {
    const zs = JSON.parse(readFileSync(join(ROOT, DIR, 'zero-shot.json'), 'utf8'));
    const expected = readSafetensors(readFileSync(join(ROOT, DIR, 'zero-shot.safetensors')));
    const r = await page.evaluate(async ({ dir, zs, device }) => {
      const { Tessera } = await import('/web/text.js');
      const engine = await Tessera.create(device === 'cpu2' ? { device: 'cpu', threads: 2 } : { device });
      const clip = await engine.loadClip(`/${dir}`, { cache: false });
      const image = await (await fetch(`/${zs.image}`)).blob();
      const scores = await clip.zeroShot(image, zs.labels, { template: zs.template });
      const texts = zs.labels.map((l) => zs.template.replace('{}', l));
      const { embeddings, truncated } = await clip.embedText(texts);
      const img = await clip.embedImage(image);
      const long = await clip.embedText(['word '.repeat(100)]);
      const errors = [];
      for (const [labels, template] of [[[], zs.template], [['cat'], 'no placeholder']]) {
        try {
          await clip.zeroShot(image, labels, { template });
          errors.push('accepted');
        } catch (e) {
          errors.push(e.kind);
        }
      }
      clip.dispose();
      let disposed = null;
      try {
        await clip.embedText(['x']);
      } catch (e) {
        disposed = e.kind;
      }
      return { info: clip.info, scores, text: embeddings.map((e) => Array.from(e)), truncated, img: Array.from(img), longCut: long.truncated[0], errors, disposed };
    }, { dir: DIR, zs, device });
    const want = expected.logits_per_image.data;
    for (const [i, label] of zs.labels.entries()) {
      const s = r.scores.find((x) => x.label === label);
      assert.ok(Math.abs(s.logit - want[i]) < 1e-4, `${device} ${label}: ${s.logit} against ${want[i]}`);
    }
    assert.ok(r.scores.every((s, i) => i === 0 || r.scores[i - 1].score >= s.score), 'best first');
    const textDiff = maxDiff(r.text.flat(), expected.text_embeds.data);
    const imgDiff = maxDiff(r.img, expected.image_embeds.data);
    console.log(`${device}: zero-shot logits match; text embeddings ${textDiff.toExponential(2)}, image ${imgDiff.toExponential(2)} from transformers`);
    assert.ok(textDiff <= 1e-4 && imgDiff <= 1e-4);
    assert.deepEqual(r.truncated, zs.labels.map(() => false));
    assert.equal(r.longCut, true);
    assert.deepEqual(r.errors, ['input', 'input']);
    assert.equal(r.disposed, 'disposed');
  });
}

// SigLIP 2 style (tokenizer.json) and SigLIP's own (spiece.model, no tokenizer.json).
for (const [device, SIGLIP] of ['webgpu', 'cpu', 'cpu2'].flatMap((d) => ['tests/fixtures/siglip-zero-shot', 'tests/fixtures/siglip-spm-zero-shot'].map((f) => [d, f]))) {
  test(`SigLIP zero-shot (${SIGLIP.split('/').pop()}) on ${device} matches transformers`, { timeout: 300_000 }, async () => {
    const zs = JSON.parse(readFileSync(join(ROOT, SIGLIP, 'zero-shot.json'), 'utf8'));
    const expected = readSafetensors(readFileSync(join(ROOT, SIGLIP, 'zero-shot.safetensors')));
    const r = await page.evaluate(async ({ dir, zs, device }) => {
      const { Tessera } = await import('/web/text.js');
      const engine = await Tessera.create(device === 'cpu2' ? { device: 'cpu', threads: 2 } : { device });
      const model = await engine.loadClip(`/${dir}`, { cache: false });
      const image = await (await fetch(`/${zs.image}`)).blob();
      const scores = await model.zeroShot(image, zs.labels, { template: zs.template });
      const { embeddings } = await model.embedText(zs.labels.map((l) => zs.template.replace('{}', l)));
      const info = model.info;
      model.dispose();
      return { info, scores, text: embeddings.map((e) => Array.from(e)) };
    }, { dir: SIGLIP, zs, device });
    assert.equal(r.info.family, 'siglip');
    assert.equal(r.info.scores, 'sigmoid');
    const [logits, probs] = [expected.logits_per_image.data, expected.probs.data];
    for (const [i, label] of zs.labels.entries()) {
      const s = r.scores.find((x) => x.label === label);
      assert.ok(Math.abs(s.logit - logits[i]) < 1e-4, `${device} ${label}: logit ${s.logit} against ${logits[i]}`);
      assert.ok(Math.abs(s.score - probs[i]) < 1e-5, `${device} ${label}: sigmoid ${s.score} against ${probs[i]}`);
    }
    // transformers' text embeddings are not normalized; the package's are.
    const p = r.info.projectionDim;
    const want = Array.from(expected.text_embeds.data);
    const unit = [];
    for (let i = 0; i < want.length; i += p) {
      const row = want.slice(i, i + p);
      const n = Math.hypot(...row);
      unit.push(...row.map((v) => v / n));
    }
    const diff = maxDiff(r.text.flat(), unit);
    console.log(`${device}: SigLIP sigmoids match; text embeddings ${diff.toExponential(2)} from transformers`);
    assert.ok(diff <= 1e-4);
  });
}

test('a text tower alone embeds texts as transformers does and has no image side', { timeout: 300_000 }, async () => {
  const dir = 'tests/fixtures/text/clip-text-projection';
  const want = JSON.parse(readFileSync(join(ROOT, dir, 'expected-texts.json'), 'utf8'));
  const r = await page.evaluate(async ({ dir, texts }) => {
    const { Tessera } = await import('/web/text.js');
    const engine = await Tessera.create({ device: 'cpu' });
    const model = await engine.loadClip(`/${dir}`, { cache: false });
    const { embeddings } = await model.embedText(texts);
    let zeroShot = 'accepted';
    try {
      await model.zeroShot(await (await fetch('/tests/fixtures/photos/chelsea.png')).blob(), ['cat']);
    } catch (e) {
      zeroShot = e.kind;
    }
    const info = model.info;
    model.dispose();
    return { info, embeddings: embeddings.map((e) => Array.from(e)), zeroShot };
  }, { dir, texts: want.texts });
  assert.equal(r.info.textOnly, true);
  assert.equal(r.info.scores, null);
  assert.equal(r.zeroShot, 'input');
  const diff = maxDiff(r.embeddings.flat(), want.embeddings.flat());
  console.log(`text tower alone: embeddings ${diff.toExponential(2)} from transformers`);
  assert.ok(diff <= 1e-4);
});

test('the main build says CLIP needs the text build', { timeout: 120_000 }, async () => {
  const kind = await page.evaluate(async (dir) => {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu' });
    try {
      await engine.loadClip(`/${dir}`);
      return 'loaded';
    } catch (e) {
      return `${e.kind}: ${e.message}`;
    }
  }, DIR);
  assert.match(kind, /^input: .*tessera-vit\/text/);
});
