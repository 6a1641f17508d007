import { Tessera, paintDepth } from '../web/index.js';

const $ = (id) => document.getElementById(id);
const SAMPLES = [
  '0000-ankle-boot.png', '0001-pullover.png', '0002-trouser.png', '0004-shirt.png', '0006-coat.png',
  '0008-sandal.png', '0009-sneaker.png', '0013-dress.png', '0018-bag.png', '0019-t-shirt-top.png',
];
const DEFAULT_MODEL = new URL('../models/fashion-vit', import.meta.url).href;

let engine = null;
let model = null;
// Zero-shot mode: the text build of the package (loaded on first use) and its CLIP model.
let clipEngine = null;
let clip = null;
let modelKind = 'default';
let busy = false;
let lastAttention = null;
// What the model was loaded from (to reload it at another patch size) and the image on show.
let currentSource = null;
let lastFile = null;
// An image dropped while a model loads or another image runs: handled when the page is free.
let pendingFile = null;

function status(text) {
  $('status').textContent = text;
}

function showError(err) {
  const box = $('error');
  box.textContent = err ? (err.message || String(err)) : '';
  box.hidden = !err;
}

function setBusy(b) {
  busy = b;
  $('loadBtn').disabled = b;
  $('patchSize').disabled = b || !model;
  $('merge').disabled = b || !model || (clip && modelKind === 'clip');
}

/** The token-merging setting chosen (r per layer; 0 merges nothing). */
function mergeR() {
  return Number($('merge').value || 0);
}

/** Merge settings offered for the model: r per layer from 1 up to what its first layer can merge
 * (half its tokens), each labelled with the tokens left after the last layer. */
function showMerges(m) {
  const select = $('merge');
  const keep = mergeR();
  select.replaceChildren();
  const [h, w] = m.info.imageSize;
  const offered = new Set();
  for (const r of [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]) {
    const plan = m.grid(w, h, { merge: r, maxPatches: budget() }).merge;
    if (r > 0 && (!plan || plan.layers[0].r < r)) break;
    const left = plan ? plan.tokensLeft : null;
    const label = r === 0 ? 'off' : `${r} per layer (${left} left)`;
    select.append(Object.assign(document.createElement('option'), { value: String(r), textContent: label }));
    offered.add(r);
  }
  select.value = String(offered.has(keep) ? keep : 0);
  showMergeNote();
}

/** What the merge setting does to the model's tokens. */
function showMergeNote() {
  const r = mergeR();
  document.body.dataset.merge = String(r);
  $('showRegions').disabled = r === 0;
  if (!model || r === 0) {
    $('mergeNote').textContent = model ? 'every layer sees every token' : '';
    return;
  }
  const [h, w] = model.info.imageSize;
  const plan = model.grid(w, h, { merge: r, maxPatches: budget() }).merge;
  const first = plan.layers[0].tokens;
  $('mergeNote').textContent = `${first} tokens in, ${plan.tokensLeft} after the last of ${plan.layers.length} layers`;
}

/** Patch sizes offered for a model: divisors of its image side from the one that doubles the
 * token grid's side up to a 2x2 grid, and its own. */
function patchSizes(info) {
  const side = Math.min(...info.imageSize);
  const own = info.originalPatchSize;
  const grid = Math.floor(side / own);
  const sizes = new Set([own]);
  for (let q = 1; q <= side / 2; q++) {
    if (side % q === 0 && side / q <= 2 * grid && side / q >= 2) sizes.add(q);
  }
  return [...sizes].sort((a, b) => a - b);
}

function showPatchSizes(info) {
  const select = $('patchSize');
  select.replaceChildren();
  const [h, w] = info.imageSize;
  for (const q of patchSizes(info)) {
    const tokens = Math.floor(h / q) * Math.floor(w / q);
    const label = `${q}×${q} px — ${tokens} patches${q === info.originalPatchSize ? ' (trained)' : ''}`;
    select.append(Object.assign(document.createElement('option'), { value: String(q), textContent: label }));
  }
  select.value = String(info.patchSize);
  const grid = `${Math.floor(h / info.patchSize)}×${Math.floor(w / info.patchSize)} grid`;
  $('tokens').textContent = info.patchSize === info.originalPatchSize ? grid : `${grid}, kernel PI-resized from ${info.originalPatchSize}`;
  document.body.dataset.patch = String(info.patchSize);
}

/** Zero-shot mode: a CLIP or SigLIP model (with its tokenizer.json) through the text build, which
 * the page imports only now (it is 2 MB larger than the main one). */
async function loadClip() {
  setBusy(true);
  showError(null);
  try {
    const source = $('clipSource').value.trim();
    if (!source) throw new Error('Type a CLIP or SigLIP hub id such as openai/clip-vit-base-patch32, or a URL serving its files.');
    status('Loading the text build…');
    if (!clipEngine) {
      const { Tessera: TextTessera } = await import('../web/text.js');
      clipEngine = await TextTessera.create({ device: engine.device, ...cpuOptions() });
    }
    status('Loading the model…');
    const next = await clipEngine.loadClip(source);
    if (clip) clip.dispose();
    clip = next;
    modelKind = 'clip';
    // No patch-size dial in zero-shot mode; a token budget for a NaFlex model (SigLIP 2).
    $('patchRow').hidden = true;
    $('mergeRow').hidden = true;
    $('heatRow').hidden = false;
    showBudgets(clip.info.maxPatches);
    const family = clip.info.maxPatches != null ? 'SigLIP 2 NaFlex' : clip.info.family === 'siglip' ? 'SigLIP' : 'CLIP';
    const scoring = clip.info.scores === 'sigmoid' ? 'each label scored on its own' : 'scores shared among the labels';
    $('modelName').textContent = `${family} — ${clip.info.source}, ${clip.info.projectionDim}-d image-text space, ${scoring}`;
    document.body.dataset.scores = clip.info.scores;
    $('patchSize').replaceChildren();
    $('tokens').textContent = '';
    status('Ready. Type labels, then drop an image.');
  } catch (e) {
    showError(e);
    status(clip ? 'Still using the previous zero-shot model.' : 'No zero-shot model loaded.');
  } finally {
    setBusy(false);
    $('patchSize').disabled = true;
  }
  await runPending();
}

/** The token-budget control of a NaFlex model (`own`: its checkpoint's budget; null hides it). */
function showBudgets(own) {
  const row = $('budgetRow');
  row.hidden = own == null;
  const select = $('maxPatches');
  select.replaceChildren();
  $('budgetNote').textContent = '';
  if (own == null) return;
  for (const n of [...new Set([16, 64, 128, 256, 576, 1024, own])].sort((a, b) => a - b)) {
    const label = `${n} patches${n === own ? ' (the checkpoint\'s)' : ''}`;
    select.append(Object.assign(document.createElement('option'), { value: String(n), textContent: label }));
  }
  select.value = String(own);
}

/** The budget to run a NaFlex model with, or undefined. */
function budget() {
  return $('budgetRow').hidden ? undefined : Number($('maxPatches').value);
}

/** Loads a model: `kind` picks the source (the embedded default, a hub id, dropped files);
 * with `patchSize`, the current source again at that patch size, and the image on show re-runs.
 * A GPU reset during the load reconnects and loads again, once (`reconnected`: it did). */
async function loadModel(kind, patchSize, reconnected = false) {
  if (kind === 'clip') return loadClip();
  setBusy(true);
  showError(null);
  const progress = $('progress');
  let loaded = false;
  let lost = false;
  try {
    let source;
    if (patchSize !== undefined) {
      source = currentSource;
    } else if (kind === 'default') {
      source = DEFAULT_MODEL;
    } else if (kind === 'hub') {
      source = $('hubId').value.trim();
      if (!source) throw new Error('Type a hub id such as facebook/deit-tiny-patch16-224.');
    } else if (kind === 'depth') {
      source = $('depthSource').value.trim();
      if (!source) throw new Error('Type a Depth Anything hub id such as depth-anything/Depth-Anything-V2-Small-hf, or a URL serving its files.');
    } else {
      const files = Array.from($('ckptFiles').files || []);
      const pick = (n) => files.find((f) => f.name === n);
      if (!pick('config.json') || !pick('model.safetensors')) {
        throw new Error('Choose the checkpoint files: config.json, model.safetensors and (optionally) preprocessor_config.json.');
      }
      source = { name: 'dropped checkpoint', config: pick('config.json'), weights: pick('model.safetensors'), preprocessor: pick('preprocessor_config.json') };
    }
    status('Loading model…');
    progress.hidden = false;
    progress.removeAttribute('value');
    const next = await engine.load(source, {
      patchSize,
      onProgress: ({ file, loaded, total }) => {
        if (total) {
          progress.max = total;
          progress.value = loaded;
        }
        status(`Downloading ${file}: ${(loaded / 1048576).toFixed(1)} MB${total ? ` of ${(total / 1048576).toFixed(1)} MB` : ''}`);
      },
    });
    if (model) model.dispose();
    model = next;
    if (clip) {
      clip.dispose();
      clip = null;
    }
    const depth = Boolean(next.info.depth);
    document.body.dataset.mode = depth ? 'depth' : 'classify';
    // A depth model: its map beside the image; no heatmap, patch-size or merge dials.
    $('heatRow').hidden = depth;
    $('patchRow').hidden = depth;
    $('mergeRow').hidden = depth;
    $('depthPanel').hidden = true;
    $('predictions').replaceChildren();
    showBudgets(next.info.maxPatches);
    currentSource = source;
    modelKind = kind;
    // Compile the pipelines now, so the first image's latency is the model's, not the compiler's.
    status('Preparing the GPU pipelines…');
    const [h, w] = next.info.imageSize;
    const blank = new ImageData(w, h);
    if (next.info.depth) {
      await next.depth(blank);
    } else {
      if (next.info.labels.length) await next.classify(blank);
      await next.attention(blank);
    }
    const info = model.info;
    const shownName = kind === 'default' ? 'Fashion-MNIST ViT (embedded)' : info.source;
    $('modelName').textContent = `${shownName} — ${info.family}, ${info.layers} layers, ${info.imageSize[0]}×${info.imageSize[1]} input, patch ${info.patchSize}, ${(info.weightBytes / 1048576).toFixed(1)} MB`;
    showPatchSizes(info);
    showMerges(next);
    status(info.depth ? `Ready (${info.depth} depth). Drop an image.` : info.labels.length ? 'Ready. Drop an image.' : 'Ready (a base model: embeddings and attention, no classes).');
    loaded = true;
  } catch (e) {
    // The GPU was reset while the model loaded: reconnect and load it again (once).
    lost = !reconnected && engine && engine.device === 'webgpu' && (e.kind === 'device_lost' || engine.lost);
    if (!lost) {
      showError(e);
      status(model ? 'Still using the previous model.' : 'No model loaded.');
      if (model) $('patchSize').value = String(model.info.patchSize);
    }
  } finally {
    progress.hidden = true;
    // Still busy while reconnecting: an image dropped meanwhile waits for the new device.
    if (!lost) setBusy(false);
  }
  if (lost) {
    status('The GPU was reset; reconnecting…');
    model = null;
    try {
      engine = await Tessera.create({ device: engine.device, ...cpuOptions() });
    } catch (e) {
      setBusy(false);
      showError(e);
      status('No model loaded.');
      return;
    }
    return loadModel(kind, patchSize, true);
  }
  if (loaded && patchSize !== undefined && lastFile && !pendingFile) await handleFile(lastFile);
  await runPending();
}

/** Runs the image dropped while the page was busy, if any. */
async function runPending() {
  if (busy || !pendingFile) return;
  const file = pendingFile;
  pendingFile = null;
  await handleFile(file);
}

function drawImage(bitmap) {
  const view = $('view');
  const heat = $('heat');
  const maxSide = 420;
  const scale = Math.min(maxSide / bitmap.width, maxSide / bitmap.height);
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  for (const c of [view, heat]) {
    c.width = w;
    c.height = h;
    c.style.width = `${w}px`;
  }
  const ctx = view.getContext('2d');
  ctx.imageSmoothingEnabled = scale < 4;
  ctx.drawImage(bitmap, 0, 0, w, h);
  $('stage').hidden = false;
  $('drop').classList.add('has-image');
}

function heatColor(t) {
  const stops = [[13, 8, 77], [140, 26, 140], [230, 77, 51], [255, 217, 51]];
  const x = Math.min(Math.max(t, 0), 1) * 3;
  const i = Math.min(Math.floor(x), 2);
  const f = x - i;
  return stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
}

/** The grid's cell (r, c) in canvas pixels. */
function cell(heat, rows, cols, r, c) {
  const x0 = Math.round((c * heat.width) / cols);
  const y0 = Math.round((r * heat.height) / rows);
  return [x0, y0, Math.round(((c + 1) * heat.width) / cols) - x0, Math.round(((r + 1) * heat.height) / rows) - y0];
}

/** ToMe's picture of merging: the patches of each merged token filled with their mean colour,
 * outlined where neighbouring patches belong to different tokens. */
function drawRegions(ctx, heat) {
  const { rows, cols, groups } = lastAttention;
  const view = $('view');
  const pixels = view.getContext('2d').getImageData(0, 0, view.width, view.height).data;
  const sums = new Map();
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const [x0, y0, w, h] = cell(heat, rows, cols, r, c);
      const s = sums.get(groups[r * cols + c]) ?? [0, 0, 0, 0];
      for (let y = y0; y < y0 + h; y++) {
        for (let x = x0; x < x0 + w; x++) {
          const i = 4 * (y * view.width + x);
          s[0] += pixels[i];
          s[1] += pixels[i + 1];
          s[2] += pixels[i + 2];
          s[3] += 1;
        }
      }
      sums.set(groups[r * cols + c], s);
    }
  }
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = sums.get(groups[r * cols + c]);
      const n = Math.max(s[3], 1);
      ctx.fillStyle = `rgb(${Math.round(s[0] / n)}, ${Math.round(s[1] / n)}, ${Math.round(s[2] / n)})`;
      ctx.fillRect(...cell(heat, rows, cols, r, c));
    }
  }
  ctx.strokeStyle = 'rgba(255, 255, 255, 0.9)';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = groups[r * cols + c];
      const [x0, y0, w, h] = cell(heat, rows, cols, r, c);
      if (c + 1 < cols && groups[r * cols + c + 1] !== g) {
        ctx.moveTo(x0 + w, y0);
        ctx.lineTo(x0 + w, y0 + h);
      }
      if (r + 1 < rows && groups[(r + 1) * cols + c] !== g) {
        ctx.moveTo(x0, y0 + h);
        ctx.lineTo(x0 + w, y0 + h);
      }
    }
  }
  ctx.stroke();
  heat.dataset.regions = String(sums.size);
  // The tokens the last layer's attention sees (the class token aside), each over its patches.
  return `${sums.size} tokens into the last layer, over ${rows} × ${cols} patches`;
}

function drawCaption(ctx, caption) {
  ctx.font = '12px system-ui, sans-serif';
  const tw = ctx.measureText(caption).width;
  ctx.fillStyle = 'rgba(0, 0, 0, 0.6)';
  ctx.fillRect(4, 4, tw + 10, 18);
  ctx.fillStyle = '#fff';
  ctx.fillText(caption, 9, 17);
}

function drawHeat() {
  const heat = $('heat');
  const ctx = heat.getContext('2d');
  ctx.clearRect(0, 0, heat.width, heat.height);
  delete heat.dataset.regions;
  if (lastAttention && lastAttention.groups && $('showRegions').checked) {
    drawCaption(ctx, drawRegions(ctx, heat));
    heat.dataset.drawn = 'true';
    return;
  }
  if (!lastAttention || !$('showHeat').checked) return;
  const { rows, cols, mean } = lastAttention;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of mean) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const cw = heat.width / cols;
  const ch = heat.height / rows;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const t = hi > lo ? (mean[r * cols + c] - lo) / (hi - lo) : 0;
      const [R, G, B] = heatColor(t);
      ctx.fillStyle = `rgba(${R}, ${G}, ${B}, ${0.25 + 0.45 * t})`;
      ctx.fillRect(c * cw, r * ch, cw, ch);
    }
  }
  ctx.strokeStyle = 'rgba(255, 255, 255, 0.35)';
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let c = 1; c < cols; c++) {
    ctx.moveTo(Math.round(c * cw) + 0.5, 0);
    ctx.lineTo(Math.round(c * cw) + 0.5, heat.height);
  }
  for (let r = 1; r < rows; r++) {
    ctx.moveTo(0, Math.round(r * ch) + 0.5);
    ctx.lineTo(heat.width, Math.round(r * ch) + 0.5);
  }
  ctx.stroke();
  // The grid this image ran on, in the corner.
  const merged = lastAttention.groups ? `, ${new Set(lastAttention.groups).size} merged tokens` : '';
  drawCaption(ctx, `${rows} × ${cols} patches${merged}`);
  heat.dataset.drawn = 'true';
}

function showPredictions(preds) {
  const list = $('predictions');
  list.replaceChildren();
  for (const p of preds) {
    const li = document.createElement('li');
    const label = Object.assign(document.createElement('span'), { className: 'label', textContent: p.label, title: p.label });
    const bar = Object.assign(document.createElement('span'), { className: 'bar' });
    const fill = document.createElement('span');
    fill.style.width = `${(p.score * 100).toFixed(1)}%`;
    bar.append(fill);
    const score = Object.assign(document.createElement('span'), { className: 'score', textContent: `${(p.score * 100).toFixed(1)}%` });
    li.append(label, bar, score);
    list.append(li);
  }
}

/** Zero-shot: the image against the typed labels ("a photo of a {label}."). */
async function zeroShotFile(file) {
  const labels = $('labels').value.split(',').map((l) => l.trim()).filter(Boolean);
  if (!labels.length) throw new Error('Type some labels, comma-separated (a cat, a dog, …).');
  const maxPatches = budget();
  const t0 = performance.now();
  const scores = await clip.zeroShot(file, labels, { maxPatches });
  const t1 = performance.now();
  lastAttention = await clip.attention(file, { maxPatches });
  const bitmap = await createImageBitmap(file);
  drawImage(bitmap);
  bitmap.close();
  showGrid(maxPatches);
  drawHeat();
  showPredictions(scores.slice(0, 10));
  $('latency').textContent = `${(t1 - t0).toFixed(1)} ms (${labels.length} labels, incl. decode and the text tower)`;
  status(`${file.name || 'image'}: ${scores[0].label}`);
  document.body.dataset.result = scores[0].label;
}

async function handleFile(file) {
  // While a model loads (or the page reconnects to the GPU, with no model for a moment) the
  // image waits its turn; it is checked against the model once the page is free.
  if (busy) {
    pendingFile = file;
    status(`${file.name || 'The image'} runs when the model is ready…`);
    return;
  }
  const zeroShot = clip && modelKind === 'clip';
  if (!zeroShot && !model) {
    showError(new Error('No model is loaded yet.'));
    return;
  }
  setBusy(true);
  showError(null);
  lastFile = file;
  status(`Running ${file.name || 'image'}…`);
  try {
    if (!file.size) throw new Error(`${file.name || 'The file'} is empty.`);
    await (zeroShot ? zeroShotFile(file) : model.info.depth ? depthFile(file) : classifyFile(file));
  } catch (e) {
    if (!zeroShot && e.kind === 'device_lost') {
      // Busy until the new device is open; loadModel takes over from there.
      await recover(file);
      return;
    }
    showError(e);
    status('Drop another image.');
  } finally {
    setBusy(false);
    // No patch-size dial in zero-shot mode.
    if (zeroShot) $('patchSize').disabled = true;
  }
  await runPending();
}

/** What the heatmap shows, and for a NaFlex model the grid this image got under its budget. */
function showGrid(maxPatches) {
  const a = lastAttention;
  $('heatWhose').textContent = a.source === 'pool' ? '(attention-pooling head)' : '(last layer, CLS token)';
  document.body.dataset.grid = `${a.rows}x${a.cols}`;
  if (maxPatches !== undefined) {
    $('budgetNote').textContent = `this image: ${a.rows}×${a.cols} grid, ${a.rows * a.cols} of ${maxPatches} patches`;
  }
}

/** A depth model: the image on the left, its depth map (at the image's size) on the right. */
async function depthFile(file) {
  const t0 = performance.now();
  const d = await model.depth(file);
  const t1 = performance.now();
  const bitmap = await createImageBitmap(file);
  drawImage(bitmap);
  bitmap.close();
  lastAttention = null;
  drawHeat();
  const canvas = $('depthCanvas');
  const { min, max } = paintDepth(canvas, d, { colormap: 'inferno' });
  $('depthPanel').hidden = false;
  const unit = model.info.depth === 'metric' ? ' m' : '';
  const nearer = model.info.depth === 'metric' ? 'bright is farther' : 'bright is nearer';
  $('depthNote').textContent = `${d.width}×${d.height} depth map (ran at ${d.modelWidth}×${d.modelHeight}), ${min.toFixed(2)} to ${max.toFixed(2)}${unit}; ${nearer}`;
  $('latency').textContent = `${(t1 - t0).toFixed(1)} ms (depth at ${d.modelWidth}×${d.modelHeight}, incl. decode, upload and the resize back)`;
  status(`${file.name || 'image'}: depth map`);
  document.body.dataset.grid = `${d.modelHeight / model.info.patchSize}x${d.modelWidth / model.info.patchSize}`;
  document.body.dataset.result = 'depth';
}

/** The image classifier: top-5 classes and the attention map. */
async function classifyFile(file) {
  const maxPatches = budget();
  const t0 = performance.now();
  // The engine decodes and checks the file first, so an unusable file never reaches the page.
  const merge = mergeR();
  const preds = model.info.labels.length ? await model.classify(file, { topK: 5, maxPatches, merge }) : [];
  const t1 = performance.now();
  lastAttention = await model.attention(file, { maxPatches, merge });
  const bitmap = await createImageBitmap(file);
  drawImage(bitmap);
  bitmap.close();
  showGrid(maxPatches);
  drawHeat();
  showPredictions(preds);
  const merged = merge ? `, merging ${merge} tokens per layer` : '';
  $('latency').textContent = `${(t1 - t0).toFixed(1)} ms (classify at patch ${model.info.patchSize}${merged}, incl. decode and upload)`;
  status(preds.length ? `${file.name || 'image'}: ${preds[0].label}` : `${file.name || 'image'}: attention map`);
  document.body.dataset.result = preds.length ? preds[0].label : '';
}

// A lost GPU device (driver reset, tab backgrounded on some systems): open WebGPU again, reload the
// model and retry, without reloading the page.
async function recover(file) {
  status('The GPU was reset; reconnecting…');
  try {
    try {
      engine = await Tessera.create({ device: engine?.device ?? 'auto', ...cpuOptions() });
    } finally {
      setBusy(false);
    }
    const patch = model ? model.info.patchSize : undefined;
    model = null;
    await loadModel(modelKind);
    if (model && patch !== undefined && patch !== model.info.patchSize) {
      lastFile = file;
      await loadModel(modelKind, patch); // re-runs the image
    } else if (model) {
      await handleFile(file);
    }
  } catch (e) {
    showError(e);
  }
}

function setupInputs() {
  const drop = $('drop');
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const ev of ['dragleave', 'drop']) {
    drop.addEventListener(ev, () => drop.classList.remove('over'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (file) handleFile(file);
    else showError(new Error('Drop an image file.'));
  });
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  $('file').addEventListener('change', (e) => {
    const f = e.target.files[0];
    if (f) handleFile(f);
    e.target.value = '';
  });
  $('showHeat').addEventListener('change', drawHeat);
  $('showRegions').addEventListener('change', drawHeat);
  $('merge').addEventListener('change', () => {
    showMergeNote();
    if (lastFile && !busy) handleFile(lastFile);
  });
  $('modelKind').addEventListener('change', () => {
    const kind = $('modelKind').value;
    $('hubId').hidden = kind !== 'hub';
    $('depthSource').hidden = kind !== 'depth';
    $('ckptFiles').hidden = kind !== 'files';
    $('clipSource').hidden = kind !== 'clip';
    $('labels').hidden = kind !== 'clip';
  });
  $('loadBtn').addEventListener('click', () => loadModel($('modelKind').value));
  $('maxPatches').addEventListener('change', () => {
    if (model && !(clip && modelKind === 'clip')) showMerges(model);
    if (lastFile && !busy) handleFile(lastFile);
  });
  $('patchSize').addEventListener('change', () => {
    if (!model || busy) return;
    loadModel(modelKind, Number($('patchSize').value));
  });
  const samples = $('samples');
  for (const name of SAMPLES) {
    const url = new URL(`../models/fashion-vit/samples/${name}`, import.meta.url).href;
    const b = document.createElement('button');
    b.type = 'button';
    b.title = name.slice(5, -4).replace(/-/g, ' ');
    b.append(Object.assign(document.createElement('img'), { src: url, alt: b.title }));
    b.addEventListener('click', async () => {
      const blob = await (await fetch(url)).blob();
      handleFile(new File([blob], name, { type: 'image/png' }));
    });
    samples.append(b);
  }
}

/** On the CPU backend the models run in worker threads (as many as the page allows, or
 * `?threads=N`), so the page stays responsive while they run. */
function cpuOptions() {
  const t = new URLSearchParams(location.search).get('threads');
  return { worker: true, threads: t ? Number(t) : undefined };
}

async function main() {
  setupInputs();
  try {
    // WebGPU on a real GPU adapter, else the CPU backend (WebAssembly SIMD): the page works in
    // every browser, and says which path runs and why.
    // `?device=webgpu` or `?device=cpu` overrides the choice.
    const device = new URLSearchParams(location.search).get('device') || 'auto';
    engine = await Tessera.create({ device, ...cpuOptions() });
  } catch (e) {
    const box = $('unsupported');
    box.textContent = e.message;
    box.hidden = false;
    status('The engine could not start.');
    setBusy(true);
    return;
  }
  const a = engine.adapterInfo;
  const simd = a.isa === 'simd128+relaxed' ? 'relaxed SIMD' : a.isa === 'simd128' ? 'SIMD' : 'scalar';
  const threads = a.worker ? `, ${a.threads} worker thread${a.threads === 1 ? '' : 's'}` : `, ${a.threads} thread`;
  const where = engine.device === 'cpu' ? `CPU (WebAssembly ${simd}${threads})` : `${a.name || 'WebGPU adapter'}${a.deviceType ? ` (${a.deviceType})` : ''}`;
  $('adapter').textContent = where;
  $('adapter').title = engine.deviceReason;
  $('deviceReason').textContent = engine.deviceReason;
  document.body.dataset.device = engine.device;
  if (engine.device === 'cpu') {
    document.body.dataset.threads = String(a.threads);
    document.body.dataset.worker = String(!!a.worker);
  }
  await loadModel('default');
  document.body.dataset.ready = 'true';
}

// For the page's own tests: the engine in use (to simulate a GPU reset) and the package's class
// (to hold a reconnect open while an image is dropped).
window.__tessera = { engine: () => engine, Tessera };

main();
