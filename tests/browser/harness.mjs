// Shared pieces of the browser tests: a static file server on 127.0.0.1 and headless Chromium
// with WebGPU on SwiftShader (no GPU needed). Never downloads a browser.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.safetensors': 'application/octet-stream', '.svg': 'image/svg+xml',
};

/** The headers that make a page cross-origin isolated (SharedArrayBuffer, worker threads). */
export const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

/**
 * Serves `dir` on 127.0.0.1 (a free port), cross-origin isolated with `isolated`; resolves to
 * {url, requests (paths asked for), close}.
 */
export function serve(dir = ROOT, { isolated = false } = {}) {
  const requests = [];
  const server = createServer(async (req, res) => {
    requests.push(req.url);
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      let file = normalize(join(dir, path));
      if (!file.startsWith(dir)) throw new Error('outside');
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream', 'content-length': body.length, ...(isolated ? ISOLATION : {}) });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((ok) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      ok({ url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((done) => server.close(done)) });
    });
  });
}

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Chromium with a fresh profile (Playwright makes a temporary one per launch). */
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu',
    ],
  });
}

/** Reads a safetensors file into {name: {dims, data: Float32Array}} (f32 tensors only). */
export function readSafetensors(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const raw = bytes.slice(8 + n + a, 8 + n + b);
    out[name] = { dims: t.shape, data: new Float32Array(raw.buffer, raw.byteOffset, (b - a) / 4) };
  }
  return out;
}

/** Largest |a - b|, and whether every element is within atol. */
export function maxDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export const NATIVE = join(ROOT, 'target/release/tessera');
