//! `/v1/destinations`: a tenant's destinations (secrets sealed at rest, never returned) and
//! `POST /v1/destinations/validate`. A config must be plain (no sealed secret from a client),
//! valid for the replicator, with file paths inside the tenant's directory and a `postgres`
//! target the network policy allows.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use crate::api::db::configured::{self, ConfigTable, ConfiguredRow};
use crate::api::domain::destination::{
    CreateDestination, Destination, Destinations, UpdateDestination, ValidateDestination, findings,
    invalid, validate_config,
};
use crate::api::domain::source::{Finding, FindingLevel, ValidationReport};
use crate::api::domain::tenant::validate_name;
use crate::api::error::{ApiError, ApiErrors};
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::routes::owned;
use crate::api::state::AppState;
use crate::api::{reach, secrets};
use crate::config::{DestinationConfig, NatsDestinationConfig};
use crate::destinations::kafka::probe as kafka_probe;
use crate::destinations::nats::probe as nats_probe;

const TABLE: ConfigTable = ConfigTable::Destinations;

fn to_destination(row: ConfiguredRow) -> Destination {
    Destination {
        id: row.id,
        tenant_id: row.tenant_id,
        name: row.name,
        config: secrets::redact(row.config.0),
    }
}

async fn find(state: &AppState, tenant: &TenantId, id: i64) -> Result<ConfiguredRow, ApiError> {
    owned::find(state, TABLE, tenant, id).await
}

/// Everything a plain config from a client must pass before it is stored; errors name the
/// field.
async fn check(state: &AppState, tenant: &TenantId, plain: &Value) -> Result<(), ApiError> {
    validate_config(plain).map_err(ApiError::Invalid)?;
    state
        .files
        .check(&tenant.0, plain)
        .map_err(ApiError::Invalid)?;
    if let Some(target) = reach::destination_target(plain)? {
        reach::check(&state.policy, &target).await?;
    }
    match serde_json::from_value(plain.clone()) {
        Ok(DestinationConfig::Nats(nats)) => check_nats_addresses(state, &nats).await?,
        Ok(DestinationConfig::Kafka(kafka)) => {
            let addresses = kafka_probe::addresses(&kafka)
                .map_err(|e| ApiError::Invalid(format!("`config.kafka.brokers`: {e}")))?;
            check_addresses(state, addresses, "config.kafka.brokers").await?;
        }
        Ok(DestinationConfig::Iceberg(iceberg)) => check_iceberg_store(state, &iceberg).await?,
        _ => {}
    }
    Ok(())
}

/// An `s3://` warehouse through the API: its endpoint passes the network policy, and its keys
/// are the tenant's own (without keys the replicator would fall back on the credentials of the
/// machine or pod it runs on, which belong to the operator, not to the tenant).
async fn check_iceberg_store(
    state: &AppState,
    iceberg: &crate::config::IcebergDestinationConfig,
) -> Result<(), ApiError> {
    use crate::config::iceberg::WarehouseKind;
    if iceberg.warehouse_kind().ok() != Some(WarehouseKind::S3) {
        return Ok(());
    }
    let keys = iceberg
        .s3
        .as_ref()
        .is_some_and(|s3| s3.access_key_id.is_some() && s3.secret_access_key.is_some());
    if !keys {
        return Err(ApiError::Invalid(
            "`config.iceberg.s3.access_key_id`: an s3:// warehouse needs access_key_id and \
             secret_access_key through the control plane (the replicator's own credentials are \
             the operator's)"
                .to_owned(),
        ));
    }
    let endpoint = iceberg.s3_endpoint().into_iter().collect();
    check_addresses(state, endpoint, "config.iceberg.s3.endpoint").await
}

/// The network policy applies to every server of a `nats` URL list.
async fn check_nats_addresses(
    state: &AppState,
    nats: &NatsDestinationConfig,
) -> Result<(), ApiError> {
    let addresses = nats_probe::addresses(nats)
        .map_err(|e| ApiError::Invalid(format!("`config.nats.url`: {e}")))?;
    check_addresses(state, addresses, "config.nats.url").await
}

/// The network policy applies to each of `addresses`; a refusal names `field`.
async fn check_addresses(
    state: &AppState,
    addresses: Vec<(String, u16)>,
    field: &str,
) -> Result<(), ApiError> {
    for (host, port) in addresses {
        state
            .policy
            .check(&host, port)
            .await
            .map_err(|refusal| reach::refused(field, &refusal))?;
    }
    Ok(())
}

/// A stored destination's config, decrypted.
pub(crate) fn open(state: &AppState, row: ConfiguredRow) -> Result<Value, ApiError> {
    let context = TABLE.seal_context(&row.tenant_id, row.id);
    Ok(secrets::open(row.config.0, &state.encryptor, &context)?)
}

#[utoipa::path(post, path = "/v1/destinations", tag = "destinations", request_body = CreateDestination,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 201, description = "Created", body = Destination),
        ApiErrors,
    ))]
pub async fn create_destination(
    State(state): State<AppState>,
    tenant: TenantId,
    JsonBody(body): JsonBody<CreateDestination>,
) -> Result<(StatusCode, Json<Destination>), ApiError> {
    validate_name("name", &body.name).map_err(ApiError::Invalid)?;
    secrets::check_plain(&body.config).map_err(ApiError::Invalid)?;
    check(&state, &tenant, &body.config).await?;
    let plain = body.config;
    let seal = |id| secrets::seal(plain, &state.encryptor, &TABLE.seal_context(&tenant.0, id));
    let row = configured::create(&state.pool, TABLE, &tenant.0, &body.name, seal)
        .await
        .map_err(|e| owned::write_error(TABLE, &tenant, &body.name, e))?;
    Ok((StatusCode::CREATED, Json(to_destination(row))))
}

#[utoipa::path(get, path = "/v1/destinations", tag = "destinations",
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The tenant's destinations", body = Destinations),
        ApiErrors,
    ))]
pub async fn list_destinations(
    State(state): State<AppState>,
    tenant: TenantId,
) -> Result<Json<Destinations>, ApiError> {
    let rows = configured::list(&state.pool, TABLE, &tenant.0).await?;
    Ok(Json(Destinations {
        destinations: rows.into_iter().map(to_destination).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/destinations/{destination_id}", tag = "destinations",
    params(("destination_id" = i64, Path, description = "Destination id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "The destination, without secrets", body = Destination),
        ApiErrors,
    ))]
pub async fn get_destination(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Destination>, ApiError> {
    Ok(Json(to_destination(find(&state, &tenant, id).await?)))
}

#[utoipa::path(patch, path = "/v1/destinations/{destination_id}", tag = "destinations",
    request_body = UpdateDestination,
    params(("destination_id" = i64, Path, description = "Destination id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Updated", body = Destination),
        ApiErrors,
    ))]
pub async fn update_destination(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
    JsonBody(body): JsonBody<UpdateDestination>,
) -> Result<Json<Destination>, ApiError> {
    if let Some(name) = &body.name {
        validate_name("name", name).map_err(ApiError::Invalid)?;
    }
    let stored = find(&state, &tenant, id).await?;
    let sealed = match body.config {
        Some(mut plain) => {
            secrets::check_plain(&plain).map_err(ApiError::Invalid)?;
            secrets::keep_omitted_secrets(&mut plain, &open(&state, stored)?);
            check(&state, &tenant, &plain).await?;
            let context = TABLE.seal_context(&tenant.0, id);
            Some(secrets::seal(plain, &state.encryptor, &context))
        }
        None => None,
    };
    let row = owned::update(
        &state,
        TABLE,
        &tenant,
        id,
        body.name.as_deref(),
        sealed.as_ref(),
    )
    .await?;
    Ok(Json(to_destination(row)))
}

#[utoipa::path(delete, path = "/v1/destinations/{destination_id}", tag = "destinations",
    params(("destination_id" = i64, Path, description = "Destination id"),
           ("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 204, description = "Deleted"),
        ApiErrors,
    ))]
pub async fn delete_destination(
    State(state): State<AppState>,
    tenant: TenantId,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    owned::delete(&state, TABLE, &tenant, id).await
}

#[utoipa::path(post, path = "/v1/destinations/validate", tag = "destinations",
    request_body = ValidateDestination,
    params(("tenant_id" = String, Header, description = "Tenant the request is scoped to")),
    responses(
        (status = 200, description = "Problems found (empty: none)", body = ValidationReport),
        ApiErrors,
    ))]
pub async fn validate_destination(
    State(state): State<AppState>,
    tenant: TenantId,
    JsonBody(body): JsonBody<ValidateDestination>,
) -> Json<ValidationReport> {
    let findings = match secrets::check_plain(&body.config) {
        Err(message) => vec![invalid(message)],
        Ok(()) => match findings(&body.config).as_slice() {
            [] => match check(&state, &tenant, &body.config).await {
                Err(error) => vec![invalid(error.to_string())],
                Ok(()) => {
                    let mut findings = reachable(&body.config).await;
                    findings.extend(catalog_reachable(&state, &body.config).await);
                    findings.extend(warehouse_writable(&body.config).await);
                    findings
                }
            },
            found => found.to_vec(),
        },
    };
    Json(ValidationReport { findings })
}

/// Servers a destination talks to must answer (`nats`: connected, JetStream enabled, the
/// stream writable or creatable); other kinds are checked when the pipeline starts.
async fn reachable(plain: &Value) -> Vec<Finding> {
    let (kind, hint, probe) = match serde_json::from_value(plain.clone()) {
        Ok(DestinationConfig::Nats(nats)) => (
            "nats",
            "check nats.url, the credentials, that the server runs with JetStream (-js), and \
             nats.stream",
            futures_util::future::Either::Left(async move { nats_probe::probe(&nats).await }),
        ),
        Ok(DestinationConfig::Kafka(kafka)) => (
            "kafka",
            "check kafka.brokers, the security settings (security_protocol, sasl_*), and that \
             the principal may create and write topics under kafka.topic_prefix",
            futures_util::future::Either::Right(async move { kafka_probe::probe(&kafka).await }),
        ),
        _ => return Vec::new(),
    };
    let message = match tokio::time::timeout(std::time::Duration::from_secs(20), probe).await {
        Ok(Ok(())) => return Vec::new(),
        Ok(Err(message)) => message,
        Err(_) => "no answer within 20 s".into(),
    };
    vec![Finding {
        level: FindingLevel::Critical,
        code: "destination_unreachable".into(),
        message: format!("`config.{kind}`: {message}"),
        hint: hint.into(),
    }]
}

/// For an `iceberg` destination with an `s3://` warehouse, whether an object can be written
/// and deleted there (the endpoint passed the network policy in [`check`]).
async fn warehouse_writable(plain: &Value) -> Vec<crate::api::domain::source::Finding> {
    let Ok(DestinationConfig::Iceberg(iceberg)) = serde_json::from_value(plain.clone()) else {
        return Vec::new();
    };
    let probe = crate::destinations::iceberg::probe_warehouse(&iceberg);
    let message = match tokio::time::timeout(std::time::Duration::from_secs(20), probe).await {
        Ok(Ok(())) => return Vec::new(),
        Ok(Err(message)) => message,
        Err(_) => format!(
            "no answer within 20 s from the warehouse {}",
            iceberg.warehouse
        ),
    };
    vec![crate::api::source_db::checks::unreachable(format!(
        "`config.iceberg.warehouse`: {message}"
    ))]
}

/// For an `iceberg` destination, whether its catalog database answers (through the network
/// policy's pinned address); findings are empty for other kinds.
async fn catalog_reachable(
    state: &AppState,
    plain: &Value,
) -> Vec<crate::api::domain::source::Finding> {
    use sqlx::Connection;
    let Some(crate::config::DestinationConfig::Iceberg(_)) =
        serde_json::from_value::<crate::config::DestinationConfig>(plain.clone()).ok()
    else {
        return Vec::new();
    };
    let target = match reach::destination_target(plain) {
        Ok(Some(target)) => target,
        Ok(None) => return Vec::new(),
        Err(error) => return vec![invalid(error.to_string())],
    };
    let checked = match reach::check(&state.policy, &target).await {
        Ok(checked) => checked,
        Err(error) => return vec![invalid(error.to_string())],
    };
    let connection = reach::pinned(target.connection, &checked);
    let attempt = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sqlx::PgConnection::connect_with(&connection.sqlx_options()),
    )
    .await;
    let message = match attempt {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            return Vec::new();
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer within 10 s".to_owned(),
    };
    vec![crate::api::source_db::checks::unreachable(format!(
        "`config.iceberg.catalog.sql`: cannot connect to the catalog database: {message}"
    ))]
}
