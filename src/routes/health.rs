//! `GET /healthz`: 200 when the stores answer, 503 when one does not.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.auth.health().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "error": "store_unavailable" })),
            )
                .into_response()
        }
    }
}
