// Helpers for the API tests, loaded in the page.
export async function readTensor(url, name) {
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const view = new DataView(bytes.buffer);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const t = header[name];
  const [a, b] = t.data_offsets;
  return { dims: t.shape, data: new Float32Array(bytes.slice(8 + n + a, 8 + n + b).buffer) };
}
