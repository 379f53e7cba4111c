//! The thin tokio layer: it only moves bytes and timers between sockets and the sans-IO
//! [`TurnServer`]. One task per socket (UDP listener, TCP acceptor and connections, each
//! relay socket) and one timer task; each locks the core just long enough to feed one input
//! and drain its outputs, then sends them with the lock released.

mod relay;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use crate::config::TurnConfig;
use crate::core::{Input, Output, RelayId, Transport, TurnServer};
use crate::error::TurnError;
use crate::metrics::Metrics;

/// A running TURN server, from [`serve`].
#[derive(Debug)]
pub struct ServerHandle {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    done: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound UDP listening address (the real port when configured with port 0).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP listening address (same port as UDP), if TCP is enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bound TURN-over-TLS address, if TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The server's counters (see [`Metrics::render_prometheus`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Waits until the shutdown future given to [`serve`] has completed and every socket
    /// task has stopped.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Validates `config`, binds the UDP (and TCP) listener, and serves until `shutdown`
/// completes. Returns once the sockets are bound, so port 0 can be read back from the handle.
pub async fn serve<F>(config: TurnConfig, shutdown: F) -> Result<ServerHandle, TurnError>
where
    F: Future<Output = ()> + Send + 'static,
{
    config.validate()?;
    if !config.has_credentials() {
        tracing::warn!("TURN has no credentials configured: serving STUN Binding only");
    }
    let metrics = Arc::new(Metrics::default());
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let core = TurnServer::new(&config, Arc::clone(&metrics), Instant::now(), unix_now)?;
    let (udp, tcp) = bind_listeners(&config).await?;
    let udp_addr = udp.local_addr().map_err(|e| TurnError::io("UDP local address", e))?;
    set_buffers(&udp, LISTENER_BUFFER);
    let tcp_addr = tcp.as_ref().and_then(|t| t.local_addr().ok());
    let tls = match &config.tls {
        Some(tls) => {
            let listener = tokio::net::TcpListener::bind(tls.listen)
                .await
                .map_err(|e| TurnError::io("binding the TLS listener", e))?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
            Some((listener, acceptor))
        }
        None => None,
    };
    let tls_addr = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        udp,
        udp_ip: udp_addr.ip(),
        tcp_conns: Mutex::new(HashMap::new()),
        relays: Mutex::new(HashMap::new()),
        relay_ports: config.relay_port_range.clone(),
        next_wake: Mutex::new(Instant::now()),
        wake: Notify::new(),
        metrics: Arc::clone(&metrics),
    });
    tracing::info!(%udp_addr, ?tcp_addr, ?tls_addr, realm = %config.realm, "TURN server listening");

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(udp::run(Arc::clone(&shared))).abort_handle());
    tasks.push(tokio::spawn(timer(Arc::clone(&shared))).abort_handle());
    let limit = config.quotas.max_tcp_connections;
    if let Some(listener) = tcp {
        tasks.push(tokio::spawn(tcp::run(Arc::clone(&shared), listener, limit, None)).abort_handle());
    }
    if let Some((listener, acceptor)) = tls {
        tasks.push(
            tokio::spawn(tcp::run(Arc::clone(&shared), listener, limit, Some(acceptor))).abort_handle(),
        );
    }
    let done = tokio::spawn(async move {
        shutdown.await;
        for t in &tasks {
            t.abort();
        }
        let relays: Vec<_> = lock(&shared.relays).drain().collect();
        for (_, r) in relays {
            r.task.abort();
        }
        tracing::info!("TURN server stopped");
    });
    Ok(ServerHandle { udp_addr, tcp_addr, tls_addr, metrics, done })
}

/// Binds UDP, then TCP on the same port; with port 0, retries until both get one port.
async fn bind_listeners(
    config: &TurnConfig,
) -> Result<(UdpSocket, Option<tokio::net::TcpListener>), TurnError> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(config.listen)
            .await
            .map_err(|e| TurnError::io(format!("bind UDP {}", config.listen), e))?;
        if !config.tcp {
            return Ok((udp, None));
        }
        let port = udp.local_addr().map_err(|e| TurnError::io("UDP local address", e))?.port();
        match tokio::net::TcpListener::bind(SocketAddr::new(config.listen.ip(), port)).await {
            Ok(tcp) => return Ok((udp, Some(tcp))),
            Err(e) if config.listen.port() == 0 => last_err = Some(e),
            Err(e) => return Err(TurnError::io(format!("bind TCP {}", config.listen), e)),
        }
    }
    Err(TurnError::io(
        "bind TCP on the UDP port",
        last_err.unwrap_or_else(|| std::io::Error::other("no port")),
    ))
}

/// Socket buffer size asked for on the listening socket (the kernel caps it at
/// `net.core.rmem_max` / `wmem_max`): one socket carries every UDP client.
const LISTENER_BUFFER: usize = 4 << 20;
/// Socket buffer size asked for on each relay socket.
pub(crate) const RELAY_BUFFER: usize = 1 << 20;

/// Asks for larger send and receive buffers, so bursts are not dropped; best effort.
pub(crate) fn set_buffers(socket: &UdpSocket, size: usize) {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(size);
    let _ = sock.set_send_buffer_size(size);
}

/// One relay socket.
struct Relay {
    socket: Arc<UdpSocket>,
    ip: IpAddr,
    task: AbortHandle,
}

/// State shared by the socket tasks.
pub(crate) struct Shared {
    core: Mutex<TurnServer>,
    udp: UdpSocket,
    udp_ip: IpAddr,
    tcp_conns: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    relays: Mutex<HashMap<RelayId, Relay>>,
    relay_ports: RangeInclusive<u16>,
    next_wake: Mutex<Instant>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

/// Locks a mutex; a panic elsewhere never leaves these maps half-updated, so poisoning is
/// ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `addr` in the family of a socket bound to `local` (IPv4 targets become `::ffff:a.b.c.d`
/// on IPv6 sockets).
fn for_socket(addr: SocketAddr, local: IpAddr) -> SocketAddr {
    match (addr.ip(), local) {
        (IpAddr::V4(v4), IpAddr::V6(_)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port()),
        _ => addr,
    }
}

impl Shared {
    /// Feeds one input to the core and carries out everything it asks for.
    async fn feed(self: &Arc<Self>, input: Input<'_>) {
        let mut pending = Vec::new();
        let mut todo = self.step(input);
        while !todo.is_empty() {
            for out in todo.drain(..) {
                pending.extend(self.dispatch(out).await);
            }
            for (relay, local) in pending.drain(..) {
                todo.extend(self.step(Input::RelayBound { relay, local }));
            }
        }
    }

    /// Runs the core for one input; returns its outputs.
    fn step(&self, input: Input<'_>) -> Vec<Output> {
        let mut outs = Vec::new();
        let wake = {
            let mut core = lock(&self.core);
            core.handle_input(Instant::now(), input);
            loop {
                match core.poll_output() {
                    Output::Timeout(t) => break t,
                    o => outs.push(o),
                }
            }
        };
        let mut next = lock(&self.next_wake);
        if wake != *next {
            let earlier = wake < *next;
            *next = wake;
            if earlier {
                self.wake.notify_one();
            }
        }
        outs
    }

    /// Carries out one output; bound relay sockets are returned for the core.
    async fn dispatch(self: &Arc<Self>, out: Output) -> Vec<(RelayId, Option<SocketAddr>)> {
        match out {
            Output::Transmit { transport: Transport::Udp, to, data } => {
                if let Err(e) = self.udp.send_to(&data, for_socket(to, self.udp_ip)).await {
                    tracing::debug!(%to, error = %e, "UDP send failed");
                }
            }
            Output::Transmit { transport: Transport::Tcp, to, data } => {
                let tx = lock(&self.tcp_conns).get(&to).cloned();
                if let Some(tx) = tx {
                    // A client that cannot keep up loses datagrams, as it would over UDP.
                    let _ = tx.try_send(data);
                }
            }
            Output::SendToPeer { relay, to, data } => {
                let socket = lock(&self.relays).get(&relay).map(|r| (Arc::clone(&r.socket), r.ip));
                if let Some((socket, local)) = socket
                    && let Err(e) = socket.send_to(&data, for_socket(to, local)).await
                {
                    tracing::debug!(%to, error = %e, "relay send failed");
                }
            }
            Output::BindRelay { relay, ip, even_port, reserve } => {
                return relay::open(self, relay, ip, even_port, reserve);
            }
            Output::CloseRelay { relay } => {
                if let Some(r) = lock(&self.relays).remove(&relay) {
                    r.task.abort();
                }
            }
            Output::Timeout(_) => {}
        }
        Vec::new()
    }
}

/// Feeds [`Input::Timeout`] whenever the core's deadline passes.
async fn timer(shared: Arc<Shared>) {
    loop {
        let deadline = *lock(&shared.next_wake);
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => shared.feed(Input::Timeout).await,
            () = shared.wake.notified() => {}
        }
    }
}
