//! The `rpc` operation: call the application's backend, then make the publications its answer
//! asks for, as the server (through the rules, like the server API with its key), before the
//! caller hears the result. So a caller that gets its result knows the publications are out.

use std::sync::Arc;

use serde_json::value::RawValue;
use switchboard_protocol::{ChannelName, ErrorCode};

use super::OpFuture;
use crate::app_proxy::{AppCall, AppError};
use crate::broker::NewPublication;
use crate::rules::{Actor, Destination};
use crate::session::{OpId, OpResult};
use crate::state::AppState;

/// Runs `call` as its own task (it completes even if the connection ends first), and returns
/// the future of its result.
pub(super) fn start(state: Arc<AppState>, id: OpId, call: AppCall) -> OpFuture {
    let task = tokio::spawn(async move { run(&state, call).await });
    Box::pin(async move {
        let result =
            task.await.unwrap_or_else(|e| Err(AppError::Unavailable(format!("the call's task failed: {e}"))));
        Some((id, OpResult::Rpc(result)))
    })
}

async fn run(state: &AppState, call: AppCall) -> Result<Box<RawValue>, AppError> {
    let Some(proxy) = &state.app_proxy else {
        return Err(AppError::NotConfigured);
    };
    let answer = proxy.call(&call).await?;
    // Every publication is checked before any is made: an answer that asks for something invalid
    // publishes nothing.
    let mut requests = Vec::with_capacity(answer.publish.len());
    for (i, p) in answer.publish.into_iter().enumerate() {
        let bad = |m: &str| AppError::BadAnswer(format!("publish[{i}] to {:?}: {m}", p.channel));
        let channel = ChannelName::new(&p.channel).map_err(|e| bad(&e.to_string()))?;
        let destination = state.rules.may_publish(&Actor::Server, &channel).map_err(|d| bad(&d.message))?;
        state.rules.check_publication(&p.payload, None).map_err(|d| bad(&d.message))?;
        let request = NewPublication {
            options: state.rules.options(&channel).clone(),
            channel,
            payload: p.payload,
            info: None,
            idempotency_key: None,
        };
        requests.push((destination, request));
    }
    for (destination, request) in requests {
        let channel = request.channel.to_string();
        let failed =
            |code, message: String| AppError::Publish { code, message: format!("{channel}: {message}") };
        // A signal reaches only a participant in the room, whoever sends it.
        if let Destination::Inbox(inbox) = &destination {
            let present = state
                .broker
                .presence(&inbox.room)
                .await
                .map_err(|e| failed(ErrorCode::BrokerUnavailable, e.to_string()))?;
            state.rules.signal_target(&present, inbox).map_err(|d| failed(d.code, d.message.into_owned()))?;
        }
        state.publish(request).await.map_err(|e| failed(ErrorCode::BrokerUnavailable, e.to_string()))?;
    }
    Ok(answer.result)
}
