// tessera-vit/text: the same API over the build with text towers (CLIP: text embeddings and
// zero-shot classification), whose tokenizer makes the wasm about 1.8 MB larger.
import init, { Engine, initSync } from './pkg-text/tessera_text.js';
import { makeApi } from './core.js';

// Each URL written out in full, so that bundlers (Vite, webpack) find and emit the files.
const api = makeApi(
  init,
  Engine,
  new URL('./pkg-text/tessera_text_relaxed_bg.wasm', import.meta.url),
  new URL('./pkg-text/tessera_text.js', import.meta.url),
  new URL('./pkg-text/tessera_text_bg.wasm', import.meta.url),
  initSync,
);
export const Tessera = api.Tessera;
export const Model = api.Model;
export const ClipModel = api.ClipModel;
export { paintDepth } from './core.js';
export default Tessera;
