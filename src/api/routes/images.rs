//! `/v1/images`: replicator container images; exactly one is the default for new pipelines.
//! Every key may read them; only administrator keys (`api.api_keys`) change them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::auth::Caller;
use crate::api::db::images::{self, DeleteOutcome, UpdateOutcome};
use crate::api::domain::image::{CreateImage, Image, Images, UpdateImage};
use crate::api::domain::tenant::validate_name;
use crate::api::error::{ApiError, ApiErrors, conflict_on_unique, pg_code};
use crate::api::extract::{JsonBody, PathParam};
use crate::api::state::AppState;

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("image {id}"))
}

#[utoipa::path(post, path = "/v1/images", tag = "images", request_body = CreateImage,
    responses(
        (status = 201, description = "Created", body = Image),
        ApiErrors,
    ))]
pub async fn create_image(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateImage>,
) -> Result<(StatusCode, Json<Image>), ApiError> {
    caller.require_admin("adding an image")?;
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    let image = images::create(&state.pool, &body.name, body.is_default)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("image `{}` already exists", body.name)))?;
    Ok((StatusCode::CREATED, Json(image)))
}

#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses(
        (status = 200, description = "Every image", body = Images),
        ApiErrors,
    ))]
pub async fn list_images(State(state): State<AppState>) -> Result<Json<Images>, ApiError> {
    Ok(Json(Images {
        images: images::list(&state.pool).await?,
    }))
}

#[utoipa::path(get, path = "/v1/images/{image_id}", tag = "images",
    params(("image_id" = i64, Path, description = "Image id")),
    responses(
        (status = 200, description = "The image", body = Image),
        ApiErrors,
    ))]
pub async fn get_image(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Image>, ApiError> {
    images::get(&state.pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(patch, path = "/v1/images/{image_id}", tag = "images", request_body = UpdateImage,
    params(("image_id" = i64, Path, description = "Image id")),
    responses(
        (status = 200, description = "Updated", body = Image),
        ApiErrors,
    ))]
pub async fn update_image(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
    JsonBody(body): JsonBody<UpdateImage>,
) -> Result<Json<Image>, ApiError> {
    caller.require_admin("changing an image")?;
    if let Some(name) = &body.name {
        validate_name("name", name).map_err(ApiError::Invalid)?;
    }
    let outcome = images::update(&state.pool, id, body.name.as_deref(), body.is_default)
        .await
        .map_err(|e| conflict_on_unique(e, || "an image with this name exists".to_owned()))?;
    match outcome {
        UpdateOutcome::Updated(image) => Ok(Json(image)),
        UpdateOutcome::NotFound => Err(not_found(id)),
        UpdateOutcome::WouldLeaveNoDefault => Err(ApiError::Conflict(format!(
            "image {id} is the default: make another image the default instead"
        ))),
    }
}

#[utoipa::path(delete, path = "/v1/images/{image_id}", tag = "images",
    params(("image_id" = i64, Path, description = "Image id")),
    responses(
        (status = 204, description = "Deleted"),
        ApiErrors,
    ))]
pub async fn delete_image(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("deleting an image")?;
    match images::delete(&state.pool, id).await {
        Ok(DeleteOutcome::Deleted) => Ok(StatusCode::NO_CONTENT),
        Ok(DeleteOutcome::NotFound) => Err(not_found(id)),
        Ok(DeleteOutcome::IsDefault) => Err(ApiError::Conflict(format!(
            "image {id} is the default: make another image the default first"
        ))),
        Err(e) if pg_code(&e).as_deref() == Some("23503") => Err(ApiError::Conflict(format!(
            "image {id} is used by pipelines' replicators"
        ))),
        Err(e) => Err(e.into()),
    }
}
