//! The sans-IO TURN server: [`TurnServer`] is fed [`Input`]s with the current time and
//! returns [`Output`]s from [`TurnServer::poll_output`]. It never touches a socket or a clock.
//!
//! One file per request kind: `binding`, `allocate` (Allocate and relay binding results),
//! `refresh`, `permission` (CreatePermission), `channel` (ChannelBind), `relay` (Send/Data
//! indications, ChannelData, peer traffic). `allocation` holds per-allocation state.

mod allocate;
pub(crate) mod allocation;
mod binding;
mod channel;
mod permission;
mod refresh;
mod relay;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_relay;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::auth::{Authenticator, CredentialError, NonceCheck, Nonces};
use crate::codec::attr::{atype as at, code, method};
use crate::codec::{self, Class, Frame, IntegrityKind, Message, MessageBuilder};
use crate::config::{Quotas, TurnConfig};
use crate::metrics::Metrics;
use crate::peer_filter::PeerFilter;
use allocation::Allocation;

/// How often expired permissions and channels are purged (they are also checked on use).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams on the listening socket.
    Udp,
    /// A TCP connection (each frame one STUN message or padded ChannelData).
    Tcp,
}

/// Identifies one relay socket (one allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// Something that happened, fed to [`TurnServer::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes from a client: one UDP datagram, or one TCP frame cut by
    /// [`codec::frame_len`].
    FromClient {
        /// Transport it arrived on.
        transport: Transport,
        /// Client address.
        from: SocketAddr,
        /// The datagram or frame.
        data: &'a [u8],
    },
    /// A datagram a peer sent to relay socket `relay`.
    FromPeer {
        /// The relay socket.
        relay: RelayId,
        /// Peer address.
        from: SocketAddr,
        /// The datagram.
        data: &'a [u8],
    },
    /// Answer to [`Output::BindRelay`]: the socket's local address, or `None` if no port
    /// could be bound.
    RelayBound {
        /// The relay socket.
        relay: RelayId,
        /// Its local address.
        local: Option<SocketAddr>,
    },
    /// A TCP client connection closed; its allocation ends.
    ClientClosed {
        /// Client address.
        from: SocketAddr,
    },
    /// Time passed (the deadline of [`Output::Timeout`] was reached).
    Timeout,
}

/// What the driver must do, from [`TurnServer::poll_output`].
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `data` to the client `to` over `transport` (UDP listening socket or the TCP
    /// connection from `to`).
    Transmit {
        /// Transport.
        transport: Transport,
        /// Client address.
        to: SocketAddr,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Send `data` from relay socket `relay` to the peer `to`.
    SendToPeer {
        /// The relay socket.
        relay: RelayId,
        /// Peer address.
        to: SocketAddr,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Open a UDP relay socket on `ip` and answer with [`Input::RelayBound`]. With
    /// `reserve`, bind an even port P and also P + 1 as relay socket `reserve`, answering for
    /// `reserve` first (RFC 8656 EVEN-PORT with the R bit).
    BindRelay {
        /// The relay socket's id.
        relay: RelayId,
        /// The address to bind.
        ip: IpAddr,
        /// RFC 8656 EVEN-PORT was requested: the port must be even.
        even_port: bool,
        /// Also bind the next port, as this relay socket, for a later RESERVATION-TOKEN.
        reserve: Option<RelayId>,
    },
    /// Close relay socket `relay`.
    CloseRelay {
        /// The relay socket.
        relay: RelayId,
    },
    /// Nothing else to do; feed [`Input::Timeout`] at this instant.
    Timeout(Instant),
}

/// The client side of a 5-tuple (the server side is the one listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub(crate) transport: Transport,
    pub(crate) addr: SocketAddr,
}

/// A request that passed authentication: the key signs the response.
#[derive(Clone)]
pub(crate) struct AuthOk {
    pub(crate) username: String,
    pub(crate) key: [u8; 16],
    pub(crate) kind: IntegrityKind,
}

impl fmt::Debug for AuthOk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthOk").field("username", &self.username).finish_non_exhaustive()
    }
}

/// The sans-IO STUN/TURN server.
pub struct TurnServer {
    realm_nonce: Nonces,
    auth: Authenticator,
    filter: PeerFilter,
    quotas: Quotas,
    relay_ip: IpAddr,
    external_ip: Option<IpAddr>,
    max_lifetime: Duration,
    metrics: Arc<Metrics>,
    epoch: Instant,
    unix_at_epoch: u64,
    allocations: HashMap<RelayId, Allocation>,
    by_client: HashMap<ClientKey, RelayId>,
    per_user: HashMap<String, usize>,
    /// Allocations per client IP address (`max_allocations_per_ip`).
    per_ip: HashMap<std::net::IpAddr, usize>,
    expiries: BTreeSet<(Instant, RelayId)>,
    reservations: HashMap<RelayId, allocate::Reservation>,
    tokens: HashMap<[u8; 8], RelayId>,
    reservation_expiries: BTreeSet<(Instant, RelayId)>,
    next_sweep: Instant,
    next_relay: u64,
    outputs: VecDeque<Output>,
}

impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnServer").field("allocations", &self.allocations.len()).finish_non_exhaustive()
    }
}

impl TurnServer {
    /// A server for `config` (which should have passed [`TurnConfig::validate`]), starting at
    /// `now`, when the Unix time is `unix_now` seconds (used for time-limited credentials).
    pub fn new(
        config: &TurnConfig,
        metrics: Arc<Metrics>,
        now: Instant,
        unix_now: u64,
    ) -> Result<Self, crate::ConfigError> {
        Ok(Self {
            realm_nonce: Nonces::new(config.nonce_lifetime),
            auth: Authenticator::new(
                config.realm.clone(),
                config.static_users.clone(),
                config.auth_secret.clone(),
            ),
            filter: config.peer_filter()?,
            quotas: config.quotas.clone(),
            relay_ip: config.effective_relay_ip(),
            external_ip: config.external_ip,
            max_lifetime: config.max_allocation_lifetime,
            metrics,
            epoch: now,
            unix_at_epoch: unix_now,
            allocations: HashMap::new(),
            by_client: HashMap::new(),
            per_user: HashMap::new(),
            per_ip: HashMap::new(),
            expiries: BTreeSet::new(),
            reservations: HashMap::new(),
            tokens: HashMap::new(),
            reservation_expiries: BTreeSet::new(),
            next_sweep: now + SWEEP_INTERVAL,
            next_relay: 1,
            outputs: VecDeque::new(),
        })
    }

    /// Number of allocations held (including ones waiting for their relay socket).
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// The next thing to do; [`Output::Timeout`] when there is nothing until that instant.
    pub fn poll_output(&mut self) -> Output {
        if let Some(out) = self.outputs.pop_front() {
            return out;
        }
        let mut next = self.next_sweep;
        for set in [&self.expiries, &self.reservation_expiries] {
            if let Some(&(t, _)) = set.first() {
                next = next.min(t);
            }
        }
        Output::Timeout(next)
    }

    /// Feeds one input at time `now`.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.expire(now);
        match input {
            Input::FromClient { transport, from, data } => {
                let client = ClientKey { transport, addr: crate::peer_filter::canonical(from) };
                self.on_client(now, client, data);
            }
            Input::FromPeer { relay, from, data } => self.on_peer(now, relay, from, data),
            Input::RelayBound { relay, local } => self.on_relay_bound(now, relay, local),
            Input::ClientClosed { from } => {
                let key = ClientKey { transport: Transport::Tcp, addr: crate::peer_filter::canonical(from) };
                if let Some(&id) = self.by_client.get(&key) {
                    self.remove_allocation(id);
                }
            }
            Input::Timeout => {}
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.expiries.first() {
            if t > now {
                break;
            }
            self.remove_allocation(id);
        }
        while let Some(&(t, id)) = self.reservation_expiries.first() {
            if t > now {
                break;
            }
            self.remove_reservation(id);
        }
        if now >= self.next_sweep {
            for alloc in self.allocations.values_mut() {
                alloc.sweep(now);
            }
            self.next_sweep = now + SWEEP_INTERVAL;
        }
    }

    pub(crate) fn unix_now(&self, now: Instant) -> u64 {
        self.unix_at_epoch.saturating_add(now.saturating_duration_since(self.epoch).as_secs())
    }

    fn ms_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn on_client(&mut self, now: Instant, client: ClientKey, data: &[u8]) {
        let frame = match codec::decode(data) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.malformed.fetch_add(1, Relaxed);
                self.reject_malformed(client, data, e);
                return;
            }
        };
        match frame {
            Frame::ChannelData { channel, data } => self.on_channel_data(now, client, channel, data),
            Frame::Stun(msg) => match msg.class {
                Class::Request => self.on_request(now, client, &msg),
                Class::Indication
                    if !msg.legacy
                        && msg.method == method::SEND
                        && msg.unknown_required(at::KNOWN_REQUIRED).is_empty() =>
                {
                    self.on_send_indication(now, client, &msg);
                }
                // Responses and Binding indications (keep-alives) need nothing.
                _ => {}
            },
        }
    }

    /// A STUN request whose header is sound but whose body is not gets 400; anything else
    /// (and a bad FINGERPRINT, RFC 8489 §7.3) is dropped.
    fn reject_malformed(&mut self, client: ClientKey, data: &[u8], e: codec::DecodeError) {
        if !matches!(e, codec::DecodeError::BadAttribute | codec::DecodeError::BadHeader) || data.len() < 20 {
            return;
        }
        let typ = u16::from_be_bytes([data[0], data[1]]);
        let (m, class) = codec::attr::split_type(typ);
        let cookie = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if class != Class::Request || cookie != codec::MAGIC_COOKIE || data[0] >> 6 != 0 {
            return;
        }
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&data[8..20]);
        let bytes = MessageBuilder::new(m, Class::Error, tid).error(code::BAD_REQUEST).fingerprint().build();
        self.metrics.record_request(m, false);
        self.transmit(client, bytes);
    }

    fn on_request(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>) {
        if msg.legacy {
            if msg.method == method::BINDING {
                self.on_legacy_binding(client, msg);
            }
            return;
        }
        let unknown = msg.unknown_required(at::KNOWN_REQUIRED);
        if !unknown.is_empty() {
            let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            let b = MessageBuilder::new(msg.method, Class::Error, msg.transaction_id)
                .error(code::UNKNOWN_ATTRIBUTE)
                .attr(at::UNKNOWN_ATTRIBUTES, &list);
            self.finish_error(client, msg, b, None);
            return;
        }
        match msg.method {
            method::BINDING => self.on_binding(now, client, msg),
            method::ALLOCATE | method::REFRESH | method::CREATE_PERMISSION | method::CHANNEL_BIND => {
                let Some(auth) = self.authenticate(now, client, msg) else {
                    return;
                };
                match msg.method {
                    method::ALLOCATE => self.on_allocate(now, client, msg, auth),
                    method::REFRESH => self.on_refresh(now, client, msg, auth),
                    method::CREATE_PERMISSION => self.on_create_permission(now, client, msg, auth),
                    _ => self.on_channel_bind(now, client, msg, auth),
                }
            }
            _ => self.error(client, msg, code::BAD_REQUEST, None),
        }
    }

    /// RFC 8489 §9.2.4. Sends the error itself and returns `None` on failure.
    pub(crate) fn authenticate(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
    ) -> Option<AuthOk> {
        let Some(kind) = msg.integrity_kind() else {
            self.challenge(now, client, msg, code::UNAUTHENTICATED);
            return None;
        };
        let (Some(username), Some(_realm), Some(nonce)) =
            (msg.get(at::USERNAME), msg.get(at::REALM), msg.get(at::NONCE))
        else {
            self.error(client, msg, code::BAD_REQUEST, None);
            return None;
        };
        if self.realm_nonce.check(nonce, self.ms_since_epoch(now)) == NonceCheck::Stale {
            self.challenge(now, client, msg, code::STALE_NONCE);
            return None;
        }
        let username = match std::str::from_utf8(username) {
            Ok(u) if u.len() <= 512 => u,
            _ => {
                self.metrics.auth_failures.fetch_add(1, Relaxed);
                self.challenge(now, client, msg, code::UNAUTHENTICATED);
                return None;
            }
        };
        let key = match self.auth.key(username, self.unix_now(now)) {
            Ok(k) => k,
            Err(CredentialError::Unknown | CredentialError::Expired) => {
                self.metrics.auth_failures.fetch_add(1, Relaxed);
                self.challenge(now, client, msg, code::UNAUTHENTICATED);
                return None;
            }
        };
        if !msg.verify_integrity(&key) {
            self.metrics.auth_failures.fetch_add(1, Relaxed);
            self.challenge(now, client, msg, code::UNAUTHENTICATED);
            return None;
        }
        Some(AuthOk { username: username.to_owned(), key, kind })
    }

    /// 401 or 438 with REALM and a fresh NONCE.
    fn challenge(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>, error_code: u16) {
        let nonce = self.realm_nonce.issue(self.ms_since_epoch(now));
        let b = MessageBuilder::new(msg.method, Class::Error, msg.transaction_id)
            .error(error_code)
            .attr(at::REALM, self.auth.realm().as_bytes())
            .attr(at::NONCE, nonce.as_bytes());
        self.finish_error(client, msg, b, None);
    }

    /// An error response, signed when the request was authenticated.
    pub(crate) fn error(
        &mut self,
        client: ClientKey,
        msg: &Message<'_>,
        error_code: u16,
        auth: Option<&AuthOk>,
    ) {
        let b = MessageBuilder::new(msg.method, Class::Error, msg.transaction_id).error(error_code);
        self.finish_error(client, msg, b, auth);
    }

    fn finish_error(
        &mut self,
        client: ClientKey,
        msg: &Message<'_>,
        b: MessageBuilder,
        auth: Option<&AuthOk>,
    ) {
        self.metrics.record_request(msg.method, false);
        let bytes = sign(b, auth).build();
        self.transmit(client, bytes);
    }

    /// A success response built on `b`, signed when authenticated. Returns the bytes sent.
    pub(crate) fn success(
        &mut self,
        client: ClientKey,
        method: u16,
        b: MessageBuilder,
        auth: Option<&AuthOk>,
    ) -> Vec<u8> {
        self.metrics.record_request(method, true);
        let bytes = sign(b, auth).build();
        self.transmit(client, bytes.clone());
        bytes
    }

    pub(crate) fn transmit(&mut self, client: ClientKey, data: Vec<u8>) {
        self.outputs.push_back(Output::Transmit { transport: client.transport, to: client.addr, data });
    }

    /// The allocation of `client` usable by an authenticated request, or the error sent.
    pub(crate) fn allocation_for(
        &mut self,
        client: ClientKey,
        msg: &Message<'_>,
        auth: &AuthOk,
    ) -> Option<RelayId> {
        let id = self.by_client.get(&client).copied();
        match id.and_then(|id| self.allocations.get(&id).map(|a| (id, a))) {
            Some((id, a)) if a.is_active() => {
                if a.username != auth.username {
                    self.error(client, msg, code::WRONG_CREDENTIALS, Some(auth));
                    return None;
                }
                Some(id)
            }
            _ => {
                self.error(client, msg, code::ALLOCATION_MISMATCH, Some(auth));
                None
            }
        }
    }

    pub(crate) fn set_expiry(&mut self, id: RelayId, expires: Instant) {
        if let Some(a) = self.allocations.get_mut(&id) {
            self.expiries.remove(&(a.expires, id));
            a.expires = expires;
            self.expiries.insert((expires, id));
        }
    }

    pub(crate) fn remove_allocation(&mut self, id: RelayId) {
        let Some(a) = self.allocations.remove(&id) else {
            return;
        };
        self.expiries.remove(&(a.expires, id));
        self.by_client.remove(&a.client);
        if let Some(n) = self.per_user.get_mut(&a.quota_user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&a.quota_user);
            }
        }
        let ip = a.client.addr.ip().to_canonical();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        self.metrics.allocations_active.fetch_sub(1, Relaxed);
        self.outputs.push_back(Output::CloseRelay { relay: id });
    }

    /// Granted lifetime for a requested one (absent: the default), within the maximum.
    pub(crate) fn lifetime(&self, msg: &Message<'_>) -> Result<Duration, ()> {
        let requested = match msg.get(at::LIFETIME) {
            Some(v) => {
                let v: [u8; 4] = v.try_into().map_err(|_| ())?;
                Duration::from_secs(u64::from(u32::from_be_bytes(v)))
            }
            None => allocation::DEFAULT_LIFETIME,
        };
        if requested.is_zero() {
            return Ok(Duration::ZERO);
        }
        let floor = allocation::DEFAULT_LIFETIME.min(self.max_lifetime);
        Ok(requested.clamp(floor, self.max_lifetime))
    }

    /// Decodes every XOR-PEER-ADDRESS; `Err(code)` to answer with.
    pub(crate) fn peer_addresses(&self, msg: &Message<'_>, ipv4: bool) -> Result<Vec<SocketAddr>, u16> {
        let mut out = Vec::new();
        for v in msg.get_all(at::XOR_PEER_ADDRESS) {
            let addr = codec::attr::decode_address(v, Some(&msg.transaction_id)).ok_or(code::BAD_REQUEST)?;
            let addr = crate::peer_filter::canonical(addr);
            if addr.is_ipv4() != ipv4 {
                return Err(code::PEER_ADDRESS_FAMILY_MISMATCH);
            }
            out.push(addr);
        }
        if out.is_empty() {
            return Err(code::BAD_REQUEST);
        }
        for addr in &out {
            if !self.filter.is_allowed(addr.ip()) {
                self.metrics.peers_denied.fetch_add(1, Relaxed);
                return Err(code::FORBIDDEN);
            }
        }
        Ok(out)
    }
}

/// Adds integrity (when authenticated) and FINGERPRINT.
fn sign(b: MessageBuilder, auth: Option<&AuthOk>) -> MessageBuilder {
    match auth {
        Some(a) => b.integrity(a.kind, &a.key).fingerprint(),
        None => b.fingerprint(),
    }
}
