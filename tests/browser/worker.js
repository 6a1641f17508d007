// A module worker running the package (tests/browser/worker.test.mjs, threads.test.mjs; with
// `threads`, on worker threads of its own): it loads a checkpoint from
// a URL on the CPU backend, runs a pixel tensor and classifies a photo given as a Blob, and posts
// the results (or the error) back.
import { readTensor } from './blank.js';

self.onmessage = async ({ data: { fixture, photo, relaxedSimd, threads } }) => {
  try {
    const { Tessera } = await import('/web/index.js');
    const engine = await Tessera.create({ device: 'cpu', relaxedSimd, threads });
    const model = await engine.load(`/tests/fixtures/${fixture}`, { cache: false });
    const pv = await readTensor(`/tests/fixtures/${fixture}/expected.safetensors`, 'pixel_values');
    const out = await model.run(pv.data, pv.dims);
    const blob = await (await fetch(photo)).blob();
    const top = await model.classify(blob, { topK: 3 });
    self.postMessage({ isa: engine.adapterInfo.isa, threads: engine.adapterInfo.threads, device: engine.device, logits: Array.from(out.logits), top });
    model.dispose();
  } catch (e) {
    self.postMessage({ error: `${e.kind ?? ''}: ${e.message}` });
  }
};
