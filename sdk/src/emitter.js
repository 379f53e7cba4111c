// Events: on/off/emit shared by the client, subscriptions and rooms.

import { report } from './errors.js';

export class Emitter {
  constructor() { this._listeners = new Map(); }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, event) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(event); } catch (err) { report(err); }
    }
  }
}

/**
 * A promise settled by the first of some events: `listen(ok, fail)` subscribes to them and
 * returns their `off` functions, which all run once it settles.
 */
export function firstOf(listen) {
  return new Promise((resolve, reject) => {
    const end = (fn) => (v) => {
      for (const off of offs) off();
      fn(v);
    };
    const offs = listen(end(resolve), end(reject));
  });
}
