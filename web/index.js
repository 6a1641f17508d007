// tessera-vit: Vision Transformers in the browser, on WebGPU or on the CPU (WebAssembly SIMD). The
// engine is the tessera Rust crate compiled to wasm32 (./pkg); the API is in core.js.
import init, { Engine } from './pkg/tessera.js';
import { makeApi } from './core.js';

const here = (f) => new URL(f, import.meta.url);
const api = makeApi(init, Engine, here('./pkg/tessera_relaxed_bg.wasm'), here('./pkg/tessera.js'), here('./pkg/tessera_bg.wasm'));
export const Tessera = api.Tessera;
export const Model = api.Model;
export default Tessera;
