// A token fetched on demand: the connection's (`getToken`) and each private subscription's.

/**
 * `holder._token`, fetched with `fetch()` first when `holder._tokenStale`; concurrent callers
 * share one fetch (`holder._tokenPromise`).
 */
export function ensureToken(holder, fetch) {
  if (!holder._tokenStale || !fetch) return Promise.resolve(holder._token);
  if (!holder._tokenPromise) {
    holder._tokenPromise = Promise.resolve()
      .then(fetch)
      .then((token) => {
        holder._token = token ?? null;
        holder._tokenStale = false;
        return holder._token;
      })
      .finally(() => { holder._tokenPromise = null; });
  }
  return holder._tokenPromise;
}
