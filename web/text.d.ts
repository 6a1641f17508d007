// tessera-vit/text: the API of tessera-vit over the build with text towers (CLIP).
export * from './index';
export { default } from './index';
