//! The HTTP side: `POST /translate`, `GET /health`, JSON errors with the right status, and
//! the checks that keep bad requests away from the model worker.
//!
//! | answer | when |
//! |---|---|
//! | 200 | `{"translations": [{"text", "score"}…], "batch_texts": n}` |
//! | 400 | malformed JSON |
//! | 413 | a body over `--max-body-bytes` |
//! | 415 | a body that is not `application/json` |
//! | 422 | valid JSON of the wrong form, no texts, too many or too long texts, an empty text, a beam width outside `1..=--max-beam-width`, unknown characters (listed) |
//! | 503 | the queue holds `--queue` requests already, or the server is shutting down |
//! | 500 | the decode failed (the message says why; the server goes on) |

use super::seq2seq::data::{Vocab, UNK};
use super::worker::{Job, Stats};
use super::Limits;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The model worker's queue.
    pub queue: SyncSender<Job>,
    /// Counters of the worker and the queue.
    pub stats: Arc<Stats>,
    /// Request limits.
    pub limits: Limits,
    /// The model's input vocabulary (characters it does not know are refused).
    pub vocab: Arc<Vocab>,
}

/// The body of `POST /translate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslateRequest {
    /// Human-written dates.
    pub texts: Vec<String>,
    /// Beam width (default `--beam-width`).
    #[serde(default)]
    pub beam_width: Option<i64>,
}

/// An error answer: `{"error": message, ...extra}` with `status`.
struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, body: json!({ "error": message.into() }) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The router of the server.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/translate", post(translate))
        .route("/health", get(health))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route: POST /translate, GET /health")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let s = &state.stats;
    Json(json!({
        "status": "ok",
        "queued": s.queued.load(Ordering::Relaxed),
        "requests": s.requests.load(Ordering::Relaxed),
        "decodes": s.decodes.load(Ordering::Relaxed),
        "texts": s.texts.load(Ordering::Relaxed),
        "failures": s.failures.load(Ordering::Relaxed),
    }))
}

/// Checks a request against the limits and the alphabet.
fn check(request: &TranslateRequest, state: &AppState) -> Result<i64, ApiError> {
    let limits = &state.limits;
    let unprocessable = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    if request.texts.is_empty() || request.texts.len() > limits.max_texts {
        return Err(unprocessable(format!(
            "texts: give 1 to {} texts, got {}",
            limits.max_texts,
            request.texts.len()
        )));
    }
    for (i, text) in request.texts.iter().enumerate() {
        let n = text.chars().count();
        if n == 0 || n > limits.max_chars {
            return Err(unprocessable(format!(
                "texts[{i}]: {n} characters, the limit is 1 to {}",
                limits.max_chars
            )));
        }
    }
    let unknown: BTreeSet<char> = request
        .texts
        .iter()
        .flat_map(|t| t.chars())
        .filter(|&c| state.vocab.encode(&c.to_string()) == [UNK])
        .collect();
    if !unknown.is_empty() {
        let listed: Vec<String> = unknown.iter().map(char::to_string).collect();
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "error": format!("unknown characters {listed:?}: the model reads letters, digits, space and , . / -"),
                "unknown": listed,
            }),
        });
    }
    let width = request.beam_width.unwrap_or(limits.default_beam_width);
    if !(1..=limits.max_beam_width).contains(&width) {
        return Err(unprocessable(format!(
            "beam_width must be in 1..={}, got {width}",
            limits.max_beam_width
        )));
    }
    Ok(width)
}

async fn translate(
    State(state): State<AppState>,
    body: Result<Json<TranslateRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let beam_width = check(&request, &state)?;
    let (reply, answer) = oneshot::channel();
    let job = Job { texts: request.texts, beam_width, reply };
    state.stats.queued.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = state.queue.try_send(job) {
        state.stats.queued.fetch_sub(1, Ordering::Relaxed);
        let why = match e {
            TrySendError::Full(_) => {
                format!("the queue is full ({} requests waiting): retry later", state.limits.queue)
            }
            TrySendError::Disconnected(_) => "the model worker has stopped".to_string(),
        };
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why));
    }
    match answer.await {
        Ok(Ok(reply)) => {
            Ok(Json(json!({ "translations": reply.translations, "batch_texts": reply.batch_texts })))
        }
        Ok(Err(message)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding failed: {message}")))
        }
        Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model worker has stopped")),
    }
}
