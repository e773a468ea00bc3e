//! `/v1/sources/{source_id}/publications`: publications on a tenant's source database.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::sources::connect_source;
use crate::api::domain::source::{CreatePublication, Publication, Publications, UpdatePublication};
use crate::api::error::{ApiError, ApiErrors};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::source_db::publications;
use crate::api::state::AppState;

#[utoipa::path(post, path = "/v1/sources/{source_id}/publications", tag = "publications",
    request_body = CreatePublication,
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 201, description = "Created", body = Publication),
        ApiErrors,
    ))]
pub async fn create_publication(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(source_id): PathParam<i64>,
    JsonBody(body): JsonBody<CreatePublication>,
) -> Result<(StatusCode, Json<Publication>), ApiError> {
    let pool = connect_source(&state, &tenant, source_id).await?;
    let publication = publications::create(&pool, &body.name, &body.tables).await?;
    Ok((StatusCode::CREATED, Json(publication)))
}

#[utoipa::path(get, path = "/v1/sources/{source_id}/publications", tag = "publications",
    params(("source_id" = i64, Path, description = "Source id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The source's publications", body = Publications),
        ApiErrors,
    ))]
pub async fn list_publications(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(source_id): PathParam<i64>,
) -> Result<Json<Publications>, ApiError> {
    let pool = connect_source(&state, &tenant, source_id).await?;
    Ok(Json(Publications {
        publications: publications::list(&pool).await?,
    }))
}

#[utoipa::path(get, path = "/v1/sources/{source_id}/publications/{publication_name}",
    tag = "publications",
    params(("source_id" = i64, Path, description = "Source id"),
           ("publication_name" = String, Path, description = "Publication name"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The publication and its tables", body = Publication),
        ApiErrors,
    ))]
pub async fn get_publication(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam((source_id, name)): PathParam<(i64, String)>,
) -> Result<Json<Publication>, ApiError> {
    let pool = connect_source(&state, &tenant, source_id).await?;
    Ok(Json(publications::get(&pool, &name).await?))
}

#[utoipa::path(put, path = "/v1/sources/{source_id}/publications/{publication_name}",
    tag = "publications", request_body = UpdatePublication,
    params(("source_id" = i64, Path, description = "Source id"),
           ("publication_name" = String, Path, description = "Publication name"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The publication with its new tables", body = Publication),
        ApiErrors,
    ))]
pub async fn update_publication(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam((source_id, name)): PathParam<(i64, String)>,
    JsonBody(body): JsonBody<UpdatePublication>,
) -> Result<Json<Publication>, ApiError> {
    let pool = connect_source(&state, &tenant, source_id).await?;
    Ok(Json(
        publications::set_tables(&pool, &name, &body.tables).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/sources/{source_id}/publications/{publication_name}",
    tag = "publications",
    params(("source_id" = i64, Path, description = "Source id"),
           ("publication_name" = String, Path, description = "Publication name"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 204, description = "Dropped"),
        ApiErrors,
    ))]
pub async fn delete_publication(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam((source_id, name)): PathParam<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    let pool = connect_source(&state, &tenant, source_id).await?;
    publications::drop(&pool, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
