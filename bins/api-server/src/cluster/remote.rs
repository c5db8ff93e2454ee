//! What only the lease holder knows in memory, made available to the other instances:
//!
//! * its queue statistics (`GET /api/queues`), written to the shared document [`QUEUES_KEY`]
//!   at most once a second and only when they changed ([`share_queues`]);
//! * pauses and resumes asked on an instance that does not hold the AMI link: queued as
//!   commands ([`forward_pause`]), claimed and run by the holder ([`run_commands`]) exactly as
//!   if they had been asked there, and answered with the holder's status and body. The asker
//!   waits a bounded time and answers 503 naming the situation when no holder answers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, ResponseError as _, web};
use domain::PauseReason;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ClusterHandle;
use crate::error::ApiError;
use crate::state::AppState;

/// The shared document holding the holder's `GET /api/queues` body.
pub const QUEUES_KEY: &str = "queues";

/// How often the holder looks at its queue statistics and at pending commands.
const SHARE_EVERY: Duration = Duration::from_secs(1);
const CLAIM_EVERY: Duration = Duration::from_millis(100);

/// How long past the action timeout an asker waits for the holder's answer (the holder waits
/// up to the action timeout for the PBX to confirm).
const ANSWER_MARGIN: Duration = Duration::from_secs(3);

/// A pause or resume asked on another instance.
#[derive(Debug, Serialize, Deserialize)]
struct PauseCommand {
    /// The record id as the client gave it.
    id: String,
    /// The pause reason; `None` resumes.
    reason: Option<String>,
    /// One queue only, or all the agent's queues.
    queue: Option<String>,
}

/// The holder's answer: the HTTP status and JSON body it would have answered.
#[derive(Debug, Serialize, Deserialize)]
struct CommandAnswer {
    status: u16,
    body: serde_json::Value,
}

/// On the lease holder: writes the queue statistics to the shared document, at most once a
/// second and only when they changed, until `cancel` fires.
pub async fn share_queues(
    cluster: ClusterHandle,
    callcenter: Arc<crate::callcenter::CallCenter>,
    cancel: CancellationToken,
) {
    let mut last: Option<String> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SHARE_EVERY) => {}
        }
        if !cluster.status.is_holder() {
            last = None;
            continue;
        }
        let bodies = crate::rest::queue_bodies(&callcenter);
        let Ok(json) = serde_json::to_string(&bodies) else {
            continue;
        };
        if last.as_ref() == Some(&json) {
            continue;
        }
        match cluster.store.put_shared(QUEUES_KEY, json.clone()).await {
            Ok(()) => last = Some(json),
            Err(e) => tracing::warn!(error = %e, "sharing the queue statistics failed"),
        }
    }
}

/// On an instance without the AMI link: has the holder pause or resume the agent and answers
/// what it answered, or 503 when no holder answers within the action timeout and a margin.
pub async fn forward_pause(
    cluster: &ClusterHandle,
    raw_id: &str,
    reason: Option<&PauseReason>,
    queue: Option<String>,
    action_timeout: Duration,
) -> Result<HttpResponse, ApiError> {
    let command = PauseCommand {
        id: raw_id.to_owned(),
        reason: reason.map(|r| r.as_str().to_owned()),
        queue,
    };
    let payload = serde_json::to_string(&command)
        .map_err(|e| ApiError::Unavailable(format!("The request could not be queued: {e}.")))?;
    let unavailable = |e: store::StoreError| {
        ApiError::Unavailable(format!(
            "This instance does not hold the PBX link and could not hand the request to the one \
             that does: {e}."
        ))
    };
    let id = cluster
        .store
        .submit_command(&cluster.status.instance, payload)
        .await
        .map_err(unavailable)?;
    let wait = action_timeout + ANSWER_MARGIN;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(result) = cluster
            .store
            .command_result(&id)
            .await
            .map_err(unavailable)?
        {
            let answer: CommandAnswer = serde_json::from_str(&result).map_err(|e| {
                ApiError::Unavailable(format!("The PBX link holder's answer is unreadable: {e}."))
            })?;
            let status = actix_web::http::StatusCode::from_u16(answer.status)
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            return Ok(HttpResponse::build(status).json(answer.body));
        }
        if tokio::time::Instant::now() >= deadline {
            let holder = cluster.status.report().holder_id;
            return Err(ApiError::Unavailable(format!(
                "This instance does not hold the PBX link, and {} did not run the request within \
                 {} s; it may still run. Check the agent's state before trying again.",
                holder.map_or_else(
                    || "no instance holds it now".to_owned(),
                    |h| format!("the holder ({h})")
                ),
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On the lease holder: claims the pauses other instances queued and runs them, until
/// `cancel` fires.
pub async fn run_commands(
    state: web::Data<AppState>,
    cluster: ClusterHandle,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(CLAIM_EVERY) => {}
        }
        if !cluster.status.is_holder() {
            continue;
        }
        let claimed = match cluster
            .store
            .claim_commands(&cluster.status.instance, 8)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::debug!(error = %e, "claiming commands failed");
                continue;
            }
        };
        for (id, payload) in claimed {
            let answer = run_one(&state, &payload).await;
            let text = serde_json::to_string(&answer).unwrap_or_else(|_| {
                r#"{"status":500,"body":{"error":{"code":"internal","message":"no answer"}}}"#
                    .to_owned()
            });
            if let Err(e) = cluster.store.complete_command(&id, text).await {
                tracing::warn!(error = %e, command = %id, "storing a command's answer failed");
            }
        }
    }
}

/// Runs one queued pause here and says what a client asking here would have got.
async fn run_one(state: &AppState, payload: &str) -> CommandAnswer {
    let result = match serde_json::from_str::<PauseCommand>(payload) {
        Ok(command) => {
            let reason = match command.reason.as_deref().map(PauseReason::parse) {
                None => Ok(None),
                Some(Ok(r)) => Ok(Some(r)),
                Some(Err(e)) => Err(ApiError::Unavailable(format!(
                    "The queued request has an invalid reason: {}.",
                    e.rule
                ))),
            };
            match reason {
                Ok(reason) => {
                    crate::rest::set_paused_here(state, &command.id, reason, command.queue).await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(ApiError::Unavailable(format!(
            "The queued request is unreadable: {e}."
        ))),
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => e.error_response(),
    };
    let status = response.status().as_u16();
    // The answers here are JSON held in memory, taken without waiting.
    let body = actix_web::body::MessageBody::try_into_bytes(response.into_body())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    CommandAnswer { status, body }
}
