// Errors: the SDK's error type, errors out of HTTP answers, and where errors nobody handles go.

/** @typedef {import('../switchboard.js').SwitchboardError} SwitchboardErrorApi */

/**
 * An error with the server's code (protocol.md "Command error codes"), or 0 for client-side ones.
 * @implements {SwitchboardErrorApi}
 */
export class SwitchboardError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {{status?: number, timeout?: boolean, node?: string}} [extra]
   */
  constructor(code, message, extra) {
    super(message);
    this.name = 'SwitchboardError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/**
 * The SwitchboardError of a failed HTTP answer: its JSON error code and message, its status, `node` (111).
 * @returns {Promise<import('../switchboard.js').SwitchboardError>}
 */
export async function errorFromResponse(res) {
  let node = null;
  let code = 0;
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code ?? 0;
      message = body.error.message ?? message;
    }
    if (body && typeof body.node === 'string') node = body.node; // 111: the node that serves it
  } catch { /* not JSON */ }
  return new SwitchboardError(code, message, { status: res.status, ...(node ? { node } : {}) });
}

/** An error nobody listens for: the page's error reporting, or the console. */
export function report(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else console.error(err);
}
