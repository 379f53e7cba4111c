//! The NATS broker's supervisor: delivers the fan-out consumer's messages and presence events,
//! and handles losing and regaining NATS.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchboard_protocol::Disconnect;
use tokio::sync::mpsc;

use super::{Fanout, Shared};
use crate::broker::Health;

/// Delivers the fan-out and presence events; on a disconnect reports it and, once reconnected,
/// starts a new fan-out consumer.
pub(super) async fn supervise(
    shared: Arc<Shared>,
    fanout: Fanout,
    mut presence_events: async_nats::Subscriber,
    mut events: mpsc::UnboundedReceiver<async_nats::Event>,
) {
    let mut fanout = Some(fanout);
    loop {
        tokio::select! {
            m = async { fanout.as_mut()?.next().await }, if fanout.is_some() => match m {
                Some(Ok(m)) => shared.deliver_stored(&m),
                other => {
                    let why = match other {
                        Some(Err(e)) => format!("fan-out consumer failed: {e}"),
                        _ => "fan-out consumer ended".into(),
                    };
                    lose(&shared, why);
                    fanout = restart(&shared).await;
                }
            },
            m = presence_events.next() => match m {
                Some(m) => shared.deliver_event(&m),
                None => return,
            },
            e = events.recv() => match e {
                Some(async_nats::Event::Disconnected) => {
                    lose(&shared, "disconnected".into());
                    fanout = None;
                }
                Some(async_nats::Event::Connected) if fanout.is_none() => {
                    fanout = restart(&shared).await;
                }
                Some(async_nats::Event::Closed) | None => {
                    lose(&shared, "connection closed".into());
                    return;
                }
                Some(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)), if fanout.is_none() => {
                fanout = restart(&shared).await;
            }
        }
    }
}

fn lose(shared: &Shared, why: String) {
    let was_ok = matches!(*shared.health.read(), Health::Ok);
    *shared.health.write() = Health::Unavailable(why.clone());
    if was_ok {
        tracing::warn!(reason = %why, "lost nats; reconnecting");
        shared.sink.lost(None, Disconnect::BROKER_UNAVAILABLE);
    }
    shared.last.lock().clear();
}

async fn restart(shared: &Shared) -> Option<Fanout> {
    if shared.client.connection_state() != async_nats::connection::State::Connected {
        return None;
    }
    match shared.fanout().await {
        Ok(f) => {
            *shared.health.write() = Health::Ok;
            tracing::info!("reconnected to nats");
            Some(f)
        }
        Err(e) => {
            tracing::debug!(error = %e, "nats fan-out not ready yet");
            None
        }
    }
}
