// What the one-way transports (SSE, HTTP streaming, polling) share.

import { Conn } from './conn.js';

/** Shared by the one-way transports: the channels they were opened with, idle when there are none. */
export class OneWayConn extends Conn {
  constructor(client, name, token) {
    super(client, name, token);
    this.channels = [...client._subs.keys()];
    this.reopenQueued = false;
  }

  open() {
    if (this.channels.length === 0) {
      // Nothing to listen to: hold no connection until there is.
      this.idle = true;
      this.client._opened(this);
      return;
    }
    this.start();
  }

  /** Opens the transport for `this.channels` (each one-way transport has its own). */
  start() {
    throw new Error('not implemented');
  }

  /** The set of channels changed: reopen with the new set from the current positions. */
  sync() {
    if (!this.opened || this.closed || this.reopenQueued) return;
    const now = [...this.client._subs.keys()];
    if (now.length === this.channels.length && now.every((ch) => this.channels.includes(ch))) return;
    this.reopenQueued = true;
    // Batch subscribe()/unsubscribe() calls made in the same task into one reopen.
    queueMicrotask(() => this.client._reopen(this));
  }

  close() {
    this.closed = true;
  }
}
