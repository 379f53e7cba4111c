//! The UDP listener: every datagram goes to the core as-is.

use std::sync::Arc;

use super::Shared;
use crate::codec::MAX_FRAME;
use crate::core::{Input, Transport};

pub(super) async fn run(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        match shared.udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                shared.feed(Input::FromClient { transport: Transport::Udp, from, data: &buf[..n] }).await;
            }
            // ICMP errors reported on the socket and the like: keep serving.
            Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
        }
    }
}
