// Types for the Switchboard browser SDK (`/sdk/switchboard.js`). Wire contract: docs/protocol.md.

/** The transports, in the default order of preference. */
export type TransportName = 'webtransport' | 'websocket' | 'sse' | 'stream' | 'long-poll' | 'poll';

/**
 * - `connecting`: opening a transport, or waiting (backoff) to reconnect after a drop.
 * - `connected`: a transport is open; subscriptions are (re)established on it.
 * - `disconnected`: initial state, and after `disconnect()`.
 * - `closed`: the server said not to reconnect (codes 3500–3999, or a refused request); call
 *   `connect()` again once the cause (credentials, client) is fixed.
 */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

/** "I have seen everything up to and including `offset` of `epoch`." */
export interface Position {
  epoch: string;
  offset: number;
}

/** A publication as the server shows it (protocol.md "publication object"). */
export interface Publication<T = unknown> {
  channel: string;
  offset: number;
  epoch: string;
  /** The JSON value, or the bytes of a binary publication (`binary: true`). */
  data: T | Uint8Array;
  /** True when the publication was binary (`b64` on JSON transports, a binary frame on WebSocket). */
  binary: boolean;
  /** Present when a connected client published it. */
  info?: { client: string; user: string; [key: string]: unknown };
}

export interface SubscribedEvent {
  channel: string;
  epoch: string;
  offset: number;
  /**
   * False when the subscription could not resume from its position (history lost or too old) or
   * had no position to resume from: it now stands at the current end of the stream, and the app
   * should reload the channel's state. True when nothing was missed.
   */
  recovered: boolean;
  /** How many publications replayed after this event (0 on polling unless they came in the same answer). */
  replayed: number;
}

export interface PresenceEvent {
  channel: string;
  client: string;
  user: string;
  name?: string;
}

export interface UnsubscribedEvent {
  channel: string;
  code: number;
  reason: string;
}

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
  /** Close or disconnect code that caused the change, when there was one. */
  code?: number;
  reason?: string;
}

export interface TransportEvent {
  transport: TransportName;
}

export interface SwitchboardErrorEvent {
  /** Server code (3000–3999 disconnect codes, 100–110 command codes), or 0 for client-side failures. */
  code: number;
  message: string;
  /** True when the client stopped (state `closed`); false for a failed attempt it will retry. */
  fatal: boolean;
  transport: TransportName;
}

/** Error thrown by commands (`publish`, `presence`, `history`). */
export declare class SwitchboardError extends Error {
  /** Server command error code (100–110), or 0 for client-side errors. */
  code: number;
  /** HTTP status, when it came from an HTTP request. */
  status?: number;
  /** True when no reply came within `timeoutMs`. */
  timeout?: boolean;
}

export interface SwitchboardOptions {
  /** Server base URL (`http(s)://` or `ws(s)://`); default `location.origin`. */
  url?: string;
  /**
   * Transports to try, in order. Default `['webtransport', 'websocket', 'sse', 'stream', 'long-poll', 'poll']`,
   * with `webtransport` only where the platform has `WebTransport`.
   */
  transports?: TransportName | TransportName[];
  /** JWT sent with `connect` (WebSocket), as `token=` (SSE) or `Authorization: Bearer` (HTTP). */
  token?: string;
  /** Returns a JWT; called before the first connection and again after the server says 3005 (token expired) or 401. */
  getToken?: () => string | Promise<string>;
  /** Display name shown in presence. */
  name?: string;
  /** Reconnect delay: uniformly random in [0, min(maxMs, minMs·2^attempt)). Default `{minMs: 200, maxMs: 10000}`. */
  backoff?: { minMs?: number; maxMs?: number };
  /** Short polling: time between requests. Default 1000. */
  pollIntervalMs?: number;
  /** Long polling: `wait` seconds asked of the server. Default 25. */
  longPollWait?: number;
  /** Reply timeout of WebSocket commands and HTTP polls, in ms. Default 10000. */
  timeoutMs?: number;
  /** A transport that is not open after this many ms counts as failed (next one is tried). Default 5000. */
  openTimeoutMs?: number;
  /** For tests: implementations to use instead of the globals. */
  WebSocket?: unknown;
  EventSource?: unknown;
  fetch?: typeof fetch;
  /** For tests: timer functions (fake clocks). */
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(id: unknown): void };
  /** For tests: random source in [0, 1) for the backoff jitter. */
  random?: () => number;
}

export interface HistoryResult {
  epoch: string;
  offset: number;
  publications: Publication[];
}

export interface PresenceResult {
  clients: Record<string, { user: string; name?: string }>;
}

export declare class Subscription {
  readonly channel: string;
  /** Position of the last publication delivered (or where the subscription stands); null before the first `subscribed`. */
  readonly position: Position | null;
  /** `pending` until the server confirms, and again while reconnecting; `failed`/`unsubscribed` when ended. */
  readonly state: 'pending' | 'subscribed' | 'unsubscribed' | 'failed';
  /**
   * Publications in order, each at most once: any whose offset is not above the position already
   * delivered (same epoch) is dropped, whatever the transport replays.
   */
  on(event: 'publication', fn: (p: Publication) => void): () => void;
  /** Each time the server (re)establishes the subscription, including after every reconnect. */
  on(event: 'subscribed', fn: (e: SubscribedEvent) => void): () => void;
  on(event: 'join' | 'leave', fn: (e: PresenceEvent) => void): () => void;
  /** The server ended the subscription for good. */
  on(event: 'unsubscribed', fn: (e: UnsubscribedEvent) => void): () => void;
  /** The server refused the subscription (e.g. 103 permission denied); it is removed. */
  on(event: 'error', fn: (e: SwitchboardError) => void): () => void;
  off(event: string, fn: (e: any) => void): void;
  /** Stops the subscription (tells the server over WebSocket, reopens a one-way transport without it). */
  unsubscribe(): void;
}

export declare class Switchboard {
  constructor(options?: SwitchboardOptions);
  readonly state: ConnectionState;
  /** The transport in use (the last one that opened), or null before any opened. */
  readonly transport: TransportName | null;
  /** The configured transport order. */
  readonly transports: TransportName[];
  /** Client id the server gave this connection (null on polling and while not connected). */
  readonly clientId: string | null;

  on(event: 'state', fn: (e: StateEvent) => void): () => void;
  on(event: 'transport', fn: (e: TransportEvent) => void): () => void;
  on(event: 'error', fn: (e: SwitchboardErrorEvent) => void): () => void;
  off(event: string, fn: (e: any) => void): void;

  /**
   * Starts connecting: tries the transports in order (one that does not open hands over to the
   * next), remembers the one that worked, reconnects with backoff and resumes every subscription.
   */
  connect(): void;
  /** Closes the connection; subscriptions and their positions stay, and `connect()` resumes them. */
  disconnect(): void;
  /** Drops the current transport as a network failure would; the client reconnects and resumes. */
  dropConnection(): void;
  /** Switches to other transports; when active, reconnects with them and resumes every subscription. */
  setTransports(transports: TransportName | TransportName[]): void;

  /**
   * Subscribes to `channel` (at most one subscription per channel; throws if one exists). With
   * `since`, resumes after that position. Works before `connect()` too.
   */
  subscribe(
    channel: string,
    options?: {
      since?: Position;
      /**
       * On WebTransport, in namespaces with `datagrams` on: deliver publications as unreliable,
       * latest-wins datagrams (game state, cursors). Such a subscription never replays.
       */
      datagram?: boolean;
    },
  ): Subscription;
  /** The current subscription to `channel`, or null. */
  getSubscription(channel: string): Subscription | null;

  /**
   * Publishes `data` (any JSON value, or bytes: `Uint8Array`/`ArrayBuffer` publish a binary
   * publication). Over the WebSocket when on one, else `POST /api/publish` with the token. A
   * repeated `idempotencyKey` answers the first result and stores nothing.
   */
  publish(
    channel: string,
    data: unknown,
    options?: {
      idempotencyKey?: string;
      /** On WebTransport: send as an unacknowledged datagram (fire-and-forget; resolves at once). */
      datagram?: boolean;
    },
  ): Promise<Position>;
  /** Who is subscribed to `channel` (WebSocket `presence`, else `GET /api/presence`). */
  presence(channel: string): Promise<PresenceResult>;
  /** Publications kept in the channel's history (WebSocket `history`, else `GET /api/history`). */
  history(channel: string, options?: { limit?: number; since?: Position; reverse?: boolean }): Promise<HistoryResult>;
}

/** Cursor of positions: URL-safe base64 (no padding) of `{"channel": [epoch, offset]}`. */
export declare function encodeCursor(positions: Record<string, Position | [string, number]>): string;
/** Positions in a cursor; throws a SwitchboardError with code 107 when it does not decode. */
export declare function decodeCursor(cursor: string): Record<string, Position>;
/** Reconnect delay for attempt `attempt` (0-based): full jitter in [0, min(maxMs, minMs·2^attempt)). */
export declare function backoffDelay(attempt: number, backoff?: { minMs?: number; maxMs?: number }, random?: () => number): number;
/** Splits an NDJSON byte stream into lines across arbitrary chunk boundaries. */
export declare function createLineSplitter(onLine: (line: string) => void): {
  push(chunk: Uint8Array | string): void;
  end(): void;
};
export declare function bytesToBase64(bytes: Uint8Array): string;
export declare function base64ToBytes(b64: string): Uint8Array;
