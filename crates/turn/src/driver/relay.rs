//! UDP relay sockets: bound in the configured port range, one receive task each.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::{Relay, Shared, lock};
use crate::codec::MAX_FRAME;
use crate::core::{Input, RelayId};

/// Binds a relay socket (and with `reserve`, the next port too) and starts the receive
/// tasks. Returns the answers for the core, the reserved socket first; `None` addresses when
/// no port in the range was free.
pub(super) fn open(
    shared: &Arc<Shared>,
    id: RelayId,
    ip: IpAddr,
    even_port: bool,
    reserve: Option<RelayId>,
) -> Vec<(RelayId, Option<SocketAddr>)> {
    let range = shared.relay_ports.clone();
    let Some(rid) = reserve else {
        let local = bind_in_range(ip, range, even_port, false).and_then(|(s, _)| start(shared, id, s));
        return vec![(id, local)];
    };
    match bind_in_range(ip, range, true, true) {
        Some((socket, Some(next))) => {
            let reserved = start(shared, rid, next);
            let local = start(shared, id, socket);
            vec![(rid, reserved), (id, local)]
        }
        _ => vec![(rid, None), (id, None)],
    }
}

fn start(shared: &Arc<Shared>, id: RelayId, socket: UdpSocket) -> Option<SocketAddr> {
    let local = socket.local_addr().ok()?;
    super::set_buffers(&socket, super::RELAY_BUFFER);
    let socket = Arc::new(socket);
    let task = tokio::spawn(receive(Arc::clone(shared), id, Arc::clone(&socket))).abort_handle();
    lock(&shared.relays).insert(id, Relay { socket, ip: local.ip(), task });
    Some(local)
}

fn bind_one(ip: IpAddr, port: u32) -> Option<UdpSocket> {
    let port = u16::try_from(port).ok()?;
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    s.set_nonblocking(true).ok()?;
    UdpSocket::from_std(s).ok()
}

/// Binds a port in `range` (even if `even`); with `pair`, also the next port.
fn bind_in_range(
    ip: IpAddr,
    range: std::ops::RangeInclusive<u16>,
    even: bool,
    pair: bool,
) -> Option<(UdpSocket, Option<UdpSocket>)> {
    let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
    let len = hi - lo + 1;
    let mut r = [0u8; 4];
    crate::crypto::random_bytes(&mut r);
    let start = u32::from_be_bytes(r) % len;
    let attempts = len.min(512);
    for i in 0..attempts {
        let mut port = lo + (start + i) % len;
        if even && port % 2 == 1 {
            port = if port < hi { port + 1 } else { port - 1 };
            if port < lo {
                continue;
            }
        }
        if pair && port + 1 > hi {
            continue;
        }
        let Some(socket) = bind_one(ip, port) else {
            continue;
        };
        if !pair {
            return Some((socket, None));
        }
        if let Some(next) = bind_one(ip, port + 1) {
            return Some((socket, Some(next)));
        }
    }
    tracing::warn!(%ip, "no free relay port in the configured range");
    None
}

async fn receive(shared: Arc<Shared>, relay: RelayId, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => shared.feed(Input::FromPeer { relay, from, data: &buf[..n] }).await,
            Err(e) => tracing::debug!(error = %e, "relay receive failed"),
        }
    }
}
