// When and whether to try again.

/** Server error codes after which retrying the same request later may work. */
export const RETRYABLE_CODES = new Set([100, 106, 109]);

/**
 * Delay before reconnect attempt number `attempt` (0-based): exponential with full jitter,
 * uniformly in [0, min(maxMs, minMs * 2^attempt)).
 */
export function backoffDelay(attempt, { minMs = 200, maxMs = 10000 } = {}, random = Math.random) {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * cap);
}
