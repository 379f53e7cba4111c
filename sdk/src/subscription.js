// One channel: its position, duplicate suppression, its events.

import { Emitter } from './emitter.js';
import { ensureToken } from './token.js';

/** @typedef {import('../switchboard.js').Subscription} SubscriptionApi */

/** @implements {SubscriptionApi} */
export class Subscription extends Emitter {
  constructor(client, channel, since, datagram, token, getToken) {
    super();
    this._client = client;
    this.channel = channel;
    /** The subscription token (private channels), and how to get a new one when it expires. */
    this._token = token ?? null;
    this._getToken = getToken ?? null;
    this._tokenStale = !this._token && !!this._getToken;
    this._tokenPromise = null;
    /** Asked for latest-wins datagram delivery (honoured on WebTransport and WebRTC only). */
    this.datagram = !!datagram;
    /** `{epoch, offset}` of the last publication delivered (or where the subscription stands). */
    this.position = since ? { epoch: since.epoch, offset: since.offset } : null;
    /** @type {'pending' | 'subscribed' | 'unsubscribed' | 'failed'} */
    this.state = 'pending';
  }

  unsubscribe() { this._client._unsubscribe(this); }

  /** The subscription token to send, fetched with `getToken` when there is none yet or the last expired. */
  _ensureToken() {
    return ensureToken(this, this._getToken && (() => this._getToken(this.channel)));
  }

  /** Server says where the subscription stands (WS reply, SSE/stream `subscribed`, poll synthesised). */
  _subscribed(d) {
    this.position = { epoch: d.epoch, offset: d.offset };
    this.state = 'subscribed';
    this._emit('subscribed', {
      channel: this.channel,
      epoch: d.epoch,
      offset: d.offset,
      recovered: d.recovered === true,
      replayed: d.replayed ?? 0,
    });
  }

  /** Delivers `p` unless it is not newer than what was delivered already. Returns whether it was delivered. */
  _publication(p) {
    const pos = this.position;
    if (pos && pos.epoch === p.epoch && p.offset <= pos.offset) return false;
    if (pos && pos.epoch !== p.epoch) {
      // The stream's history was lost and nobody said so yet: say it, never silently.
      this._subscribed({ epoch: p.epoch, offset: p.offset - 1, recovered: false, replayed: 0 });
    }
    this.position = { epoch: p.epoch, offset: p.offset };
    this._emit('publication', p);
    return true;
  }

  _end(state, event) {
    this.state = state;
    this._emit(state === 'failed' ? 'error' : 'unsubscribed', event);
  }
}
