// tessera-vit: Vision Transformers in the browser, on WebGPU or on the CPU (WebAssembly SIMD). The
// engine is the tessera Rust crate compiled to wasm32 (./pkg); the API is in core.js.
import init, { Engine, initSync } from './pkg/tessera.js';
import { makeApi } from './core.js';

// Each URL written out in full, so that bundlers (Vite, webpack) find and emit the files.
const api = makeApi(
  init,
  Engine,
  new URL('./pkg/tessera_relaxed_bg.wasm', import.meta.url),
  new URL('./pkg/tessera.js', import.meta.url),
  new URL('./pkg/tessera_bg.wasm', import.meta.url),
  initSync,
);
export const Tessera = api.Tessera;
export const Model = api.Model;
export { paintDepth } from './core.js';
export default Tessera;
