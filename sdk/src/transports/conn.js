// What every transport's connection has in common.

/**
 * One connection attempt over one transport. The client drives it (`open()`, `sync()` when the
 * subscriptions change, `close()`); it only frames, and feeds the client's `_push`, `_opened`
 * and `_lost`. The client decides everything else.
 */
export class Conn {
  constructor(client, name, token) {
    this.client = client;
    this.name = name;
    this.token = token;
    this.opened = false;
    this.closed = false;
    /** Open without carrying anything (a one-way transport with no channels): proves nothing. */
    this.idle = false;
  }
}
