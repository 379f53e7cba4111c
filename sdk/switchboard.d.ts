// Types for the Switchboard browser SDK (`/sdk/switchboard.js`). Wire contract: docs/protocol.md.

/**
 * The transports. The default order is `webtransport` (where the platform has it), `websocket`,
 * `sse`, `stream`, `long-poll`, `poll`. `webrtc` (data channels, docs/webrtc.md) is opt-in: it is
 * used only when listed in `transports`.
 */
export type TransportName = 'webtransport' | 'websocket' | 'sse' | 'stream' | 'long-poll' | 'poll' | 'webrtc';

/**
 * - `connecting`: opening a transport, or waiting (backoff) to reconnect after a drop.
 * - `connected`: a transport is open; subscriptions are (re)established on it.
 * - `disconnected`: initial state, and after `disconnect()`.
 * - `closed`: the server said not to reconnect (codes 3500–3999 and 4500–4999, or a refused request); call
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

/** Error thrown by commands (`publish`, `presence`, `history`, `rpc`). */
export declare class SwitchboardError extends Error {
  /**
   * Server command error code (100–114; an `rpc` may also carry the application backend's own),
   * or 0 for client-side errors.
   */
  code: number;
  /** HTTP status, when it came from an HTTP request. */
  status?: number;
  /** True when no reply came within `timeoutMs`. */
  timeout?: boolean;
  /** Code 111 (misdirected): the base URL of the node that serves the resource. */
  node?: string;
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
  WebTransport?: unknown;
  RTCPeerConnection?: unknown;
  EventSource?: unknown;
  fetch?: typeof fetch;
  /** For tests: timer functions (fake clocks). */
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(id: unknown): void };
  /** For tests: random source in [0, 1) for the backoff jitter. */
  random?: () => number;
}

export interface SubscribeOptions {
  /** Resume after this position. */
  since?: Position;
  /**
   * On WebTransport (datagrams) or WebRTC (the `switchboard-unreliable` channel), in
   * namespaces with `datagrams` on: deliver publications unreliably, latest wins (game
   * state, cursors). Such a subscription never replays.
   */
  datagram?: boolean;
  /**
   * A subscription token for this channel (a JWT with a `channel` claim signed by your
   * backend): required in `private` namespaces, and opens a channel the connection token's
   * `subs` do not.
   */
  token?: string;
  /** Gets a (new) subscription token; called when there is none and when one expires. */
  getToken?: (channel: string) => Promise<string> | string;
}

export interface PublishOptions {
  idempotencyKey?: string;
  /** On WebTransport: send as an unacknowledged datagram (fire-and-forget; resolves at once with null). */
  datagram?: boolean;
}

export interface HistoryOptions {
  limit?: number;
  /** Publications after this position. */
  since?: Position;
  /** Newest first. */
  reverse?: boolean;
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
  /** Asked for latest-wins datagram delivery (honoured on WebTransport and WebRTC only). */
  readonly datagram: boolean;
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
  subscribe(channel: string, options?: SubscribeOptions): Subscription;
  /** The current subscription to `channel`, or null. */
  getSubscription(channel: string): Subscription | null;

  /**
   * Publishes `data` (any JSON value, or bytes: `Uint8Array`/`ArrayBuffer` publish a binary
   * publication). Over the WebSocket when on one, else `POST /api/publish` with the token. A
   * repeated `idempotencyKey` answers the first result and stores nothing.
   */
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<Position | null>;
  /** Who is subscribed to `channel` (WebSocket `presence`, else `GET /api/presence`). */
  presence(channel: string): Promise<PresenceResult>;
  /** Publications kept in the channel's history (WebSocket `history`, else `GET /api/history`). */
  history(channel: string, options?: HistoryOptions): Promise<HistoryResult>;
  /**
   * Calls `method` of the application's backend (the server's `app_proxy_url`) with `data`
   * (default `null`) and resolves the backend's `result`. Rejects with the backend's own error
   * code, 112 (backend unavailable), 113 (backend timeout) or 108 (no backend configured). Needs
   * a WebSocket, WebTransport or data channel connection: otherwise rejects with code 0.
   */
  rpc<T = unknown>(method: string, data?: unknown): Promise<T>;

  /**
   * A WebRTC room on channel `name` (`room:NAME`, in a namespace with `rooms = true`; no `@`).
   * Nothing happens until `join()`. Rooms need a transport with a client id (any but the polling
   * ones): signaling is publishing on inboxes (over HTTP, with the session token, on SSE and streaming).
   */
  room(name: string, options?: RoomOptions): Room;
}

// --- rooms (docs/webrtc.md) ------------------------------------------------------------------

export interface RoomOptions {
  /** `mesh` (default): a peer connection per other participant. `sfu`: one to the server. */
  mode?: 'mesh' | 'sfu';
  /** Camera and microphone to send (labels `camera` and `mic`); `setMedia` changes it later. */
  media?: MediaStream | null;
  /** ICE servers; default: `GET /api/ice-servers` (none when it does not answer 200). */
  iceServers?: RTCIceServer[];
  /** SFU: send video as three simulcast layers, rids `q`, `h`, `f` (1/4, 1/2, full size). */
  simulcast?: boolean;
  /**
   * SFU: `tracks` (default) receives one audio track per participant; `mixed` receives ONE audio
   * track from the server's mixer, everyone but this participant (`trackId` and `label` `mix`,
   * participant `{client: 'mix'}`). Rooms of a namespace with `audio_mix = true` are mixed anyway.
   * Over the node's `max_mixed_rooms`/`max_mixed_participants` the room's `error` event gets code 114.
   */
  audio?: 'tracks' | 'mixed';
  /** `relay` forces TURN. Default `all`. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /**
   * Mesh: how long a peer connection that still carries media outlives its participant's
   * departure without a `bye` (a dropped connection comes back under the same client id).
   * Default 15000; 0 closes at once.
   */
  rejoinGraceMs?: number;
  /** How often `speakers` measures audio levels, in ms. Default 500. */
  speakerIntervalMs?: number;
  /** RMS level (0..1) from which a participant counts as speaking. Default 0.01 (-40 dBFS). */
  speakerThreshold?: number;
}

export interface Speaker {
  participant: Participant;
  /** RMS level over the last round, 0..1. */
  level: number;
}

export interface Participant {
  /** Client id; a reconnect keeps it unless the server cannot (restarted, or another node without a shared `token_secret`). */
  client: string;
  user: string | null;
  name: string | null;
}

export interface RoomTrackEvent {
  participant: Participant;
  /**
   * The received track. SFU: a receive m-line is reused for later tracks of the same kind, so
   * the same MediaStreamTrack object may come back in a later `track` event with another trackId.
   */
  track: MediaStreamTrack;
  stream: MediaStream | null;
  kind: 'audio' | 'video';
  /** The sender's label: `camera`, `mic`, `screen` or what `addTrack` was given. */
  label: string;
  /** SFU: the room's track id. Mesh: the received MediaStreamTrack's id. */
  trackId: string;
  mid: string | null;
  /** SFU: the simulcast layers the publisher sends (empty without simulcast). */
  layers?: string[];
}

export interface RoomTrackEndedEvent {
  participant: Participant;
  trackId: string;
  kind: 'audio' | 'video';
  label: string;
}

export interface RoomTrackStats {
  trackId: string;
  participant: Participant;
  kind: 'audio' | 'video';
  label: string;
  mid: string | null;
  /** Decoded frame size (video), or null. */
  width: number | null;
  height: number | null;
  framesDecoded: number | null;
  framesPerSecond: number | null;
  /** Bits per second received since the previous `stats()` call (0 on the first). */
  bitrate: number;
  bytesReceived: number;
  packetsLost: number;
}

export declare class Room {
  readonly name: string;
  readonly mode: 'mesh' | 'sfu';
  readonly state: 'idle' | 'joining' | 'joined' | 'left';
  /** This participant's client id while joined. */
  readonly clientId: string | null;

  /** Everyone in the room, this participant included. */
  on(event: 'participants', fn: (list: Participant[]) => void): () => void;
  /** Someone else joined or left (`join` also fires for those already there when you join). */
  on(event: 'join' | 'leave', fn: (p: Participant) => void): () => void;
  on(event: 'track', fn: (e: RoomTrackEvent) => void): () => void;
  on(event: 'trackended', fn: (e: RoomTrackEndedEvent) => void): () => void;
  /** A recording of the room started, stopped or failed (docs/recording.md). */
  on(event: 'recording', fn: (e: RecordingEvent) => void): () => void;
  /**
   * Who is speaking, loudest first (this participant too, unless muted), whenever that list
   * changes. Listening starts the measurement: getStats every `speakerIntervalMs`, the level of
   * played-out audio (else the RTP audio-level of the last packet), mesh and SFU alike.
   */
  on(event: 'speakers', fn: (list: Speaker[]) => void): () => void;
  /** Every failure after `join()` (signaling, negotiation, HTTP): nothing is thrown elsewhere. */
  on(event: 'error', fn: (err: SwitchboardError | Error) => void): () => void;
  off(event: string, fn: (e: any) => void): void;

  /**
   * Connects the client if needed, subscribes to the room (presence = participants) and to this
   * participant's inbox `room:NAME@CLIENT`, then starts the media. Mesh: the newcomer offers to
   * everyone already there. SFU: `POST /rtc/sfu/{room}`. A reconnect of the client keeps its
   * client id and the call; only when the server hands out a new id is it a rejoin (new inbox,
   * new peer connections). Rejects when joining fails (and `error` fires).
   */
  join(): Promise<Room>;
  /** Closes every peer connection (mesh: `bye`; SFU: `DELETE /rtc/peers/PEER`) and unsubscribes. Local tracks keep running. */
  leave(): Promise<void>;
  participants(): Participant[];
  /** Replaces the camera/microphone (same kinds are swapped with `replaceTrack`, no renegotiation). */
  setMedia(stream: MediaStream | null): void;
  /** Sends one more track, e.g. `addTrack(screenTrack, 'screen')`. Default label: `camera` or `mic`. */
  addTrack(track: MediaStreamTrack, label?: string): void;
  /** Stops sending `track`. */
  removeTrack(track: MediaStreamTrack): void;
  /** `track.enabled = !muted` on every local track of `kind` except screen shares. */
  setMuted(kind: 'audio' | 'video', muted: boolean): void;
  /** SFU: receive simulcast layer `rid` of a track (the server switches at the next keyframe). */
  setLayer(trackId: string, rid: 'q' | 'h' | 'f' | string): Promise<void>;
  /** Inbound statistics of each remote track (`getStats`, `inbound-rtp`). */
  stats(): Promise<RoomTrackStats[]>;
}

/** The signaling inbox of a participant: `${room}@${clientId}`. */
export declare function inboxChannel(room: string, clientId: string): string;
/** Perfect negotiation: the peer whose client id sorts lower is polite. */
export declare function isPolite(me: string, them: string): boolean;
/**
 * SFU: how receive m-lines (`trackId` null = free) must change to carry the room's tracks that
 * are not `self`'s: m-lines to release, free ones to point at a track, tracks needing a new m-line.
 */
export declare function planSubscriptions(
  receivers: { mid: string; kind: string; trackId: string | null }[],
  tracks: { id: string; participant: string; kind: string; [key: string]: unknown }[],
  self: string | Iterable<string>,
): {
  release: { mid: string; trackId: string }[];
  assign: { mid: string; track: { id: string; participant: string; kind: string } }[];
  create: { id: string; participant: string; kind: string }[];
};

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

/** A recording event, published on the room's channel (docs/recording.md). */
export interface RecordingEvent {
  event: 'started' | 'stopped' | 'failed';
  id: string;
  room: string;
  /** Why it ended: `stopped`, `room_empty`, `max_duration`, `max_size`, `shutdown`, or an error. */
  reason?: string;
  files: string[];
}
