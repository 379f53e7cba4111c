//! The channel sweep: a node task that asks the broker, every so often, to forget the state of
//! channels idle for `channel_idle_ttl` (see [`super::Broker::sweep`]), so one-off channels do
//! not hold memory for good.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::state::AppState;

/// Starts the sweep of `state`'s broker; it stops with the node (shutdown, or the state dropped).
/// Outside a Tokio runtime (some unit tests build a state) there is no sweep.
pub fn start(state: &Arc<AppState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let idle = Duration::from_secs(state.config.channel_idle_ttl);
    // Often enough that a channel goes within a quarter of its idle time after it became idle.
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let weak: Weak<AppState> = Arc::downgrade(state);
    let mut shutdown = state.shutdown.subscribe();
    runtime.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let Some(state) = weak.upgrade() else { return };
            let swept = state.broker.sweep(idle);
            if swept > 0 {
                state.metrics.channels_swept.add(swept as u64);
                tracing::debug!(swept, "idle channels swept");
            }
        }
    });
}
