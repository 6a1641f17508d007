// tessera-vit/text: the same API over the build with text towers (CLIP: text embeddings and
// zero-shot classification), whose tokenizer makes the wasm about 1.8 MB larger.
import init, { Engine } from './pkg-text/tessera_text.js';
import { makeApi } from './core.js';

const here = (f) => new URL(f, import.meta.url);
const api = makeApi(init, Engine, here('./pkg-text/tessera_text_relaxed_bg.wasm'), here('./pkg-text/tessera_text.js'), here('./pkg-text/tessera_text_bg.wasm'));
export const Tessera = api.Tessera;
export const Model = api.Model;
export const ClipModel = api.ClipModel;
export default Tessera;
