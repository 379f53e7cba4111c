// Switchboard browser SDK: ES modules, no build step, no dependencies. This entry re-exports the
// public API of the modules under src/ (the server serves them at /sdk/src/...).
// Wire contract: docs/protocol.md. Types and API docs: switchboard.d.ts. Guide and layout: README.md.

export { Switchboard } from './src/client.js';
export { Subscription } from './src/subscription.js';
export { SwitchboardError } from './src/errors.js';
export { backoffDelay } from './src/retry.js';
export { bytesToBase64, base64ToBytes, encodeCursor, decodeCursor, createLineSplitter } from './src/codec.js';
export { Room } from './src/rooms/room.js';
export { inboxChannel, isPolite } from './src/rooms/mesh.js';
export { planSubscriptions } from './src/rooms/sfu.js';
