// Go encoding/gob for the mesh protocol: see gob-type.ts for the design note.
export * from './gob-type.js';
export { GobDecoder, decodeGobDefinition, decodeGobStream, type GobDecodeOptions } from './gob-decoder.js';
export { GobEncoder, encodeGobStream, encodeGobValue, type GobEncodeOptions } from './gob-encoder.js';
export * from './gob-expect.js';
export { WIRE_TYPE } from './wire-type.js';
