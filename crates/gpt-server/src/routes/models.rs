//! `GET /v1/models` and `GET /v1/models/{id}`: the one model this server runs.

use super::check_model;
use crate::api::*;
use crate::errors::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;

pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![card(&state)],
    })
}

fn card(state: &AppState) -> ModelCard {
    ModelCard {
        id: state.model_id.clone(),
        object: "model",
        created: state.started,
        owned_by: "gpt-rs",
        max_model_len: state.ctx,
    }
}

pub async fn model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    check_model(&state, Some(&id))?;
    Ok(Json(card(&state)))
}
