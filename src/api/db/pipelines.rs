//! `app.pipelines` and their `app.replicators`. A pipeline's `desired_state` is read and
//! written as [`DesiredState`] (a `text` column holding `stopped` or `started`).

use serde_json::Value;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres};

use crate::api::domain::pipeline::DesiredState;

/// A stored pipeline.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PipelineRow {
    pub id: i64,
    pub tenant_id: String,
    pub source_id: i64,
    pub destination_id: i64,
    pub replicator_id: i64,
    pub publication_name: String,
    pub config: Json<Value>,
    pub desired_state: DesiredState,
}

const COLUMNS: &str = "id, tenant_id, source_id, destination_id, replicator_id, \
                       publication_name, config, desired_state";

/// Why a pipeline cannot be created.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(PipelineRow),
    /// The source or destination does not exist for this tenant.
    Missing(&'static str),
    NoDefaultImage,
}

pub async fn create(
    pool: &PgPool,
    tenant_id: &str,
    source_id: i64,
    destination_id: i64,
    publication_name: &str,
    config: &Value,
) -> Result<CreateOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    for (table, id, noun) in [
        ("app.sources", source_id, "source"),
        ("app.destinations", destination_id, "destination"),
    ] {
        let exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select exists (select 1 from {table} where tenant_id = $1 and id = $2 for share)"
        )))
        .bind(tenant_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            return Ok(CreateOutcome::Missing(noun));
        }
    }
    let image: Option<i64> = sqlx::query_scalar("select id from app.images where is_default")
        .fetch_optional(&mut *tx)
        .await?;
    let Some(image_id) = image else {
        return Ok(CreateOutcome::NoDefaultImage);
    };
    let replicator_id: i64 = sqlx::query_scalar(
        "insert into app.replicators (tenant_id, image_id) values ($1, $2) returning id",
    )
    .bind(tenant_id)
    .bind(image_id)
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into app.pipelines (tenant_id, source_id, destination_id, replicator_id, \
         publication_name, config) values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
    )))
    .bind(tenant_id)
    .bind(source_id)
    .bind(destination_id)
    .bind(replicator_id)
    .bind(publication_name)
    .bind(Json(config))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CreateOutcome::Created(row))
}

pub async fn list(pool: &PgPool, tenant_id: &str) -> Result<Vec<PipelineRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from app.pipelines where tenant_id = $1 order by id"
    )))
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    tenant_id: &str,
    id: i64,
) -> Result<Option<PipelineRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from app.pipelines where tenant_id = $1 and id = $2"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn update(
    pool: &PgPool,
    tenant_id: &str,
    id: i64,
    publication_name: Option<&str>,
    config: Option<&Value>,
) -> Result<Option<PipelineRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update app.pipelines set publication_name = coalesce($3, publication_name), \
         config = coalesce($4, config), updated_at = now() \
         where tenant_id = $1 and id = $2 returning {COLUMNS}"
    )))
    .bind(tenant_id)
    .bind(id)
    .bind(publication_name)
    .bind(config.map(Json))
    .fetch_optional(pool)
    .await
}

pub async fn set_desired_state(
    pool: &PgPool,
    id: i64,
    state: DesiredState,
) -> Result<(), sqlx::Error> {
    sqlx::query("update app.pipelines set desired_state = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(state)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes the pipeline and its replicator row.
pub async fn delete(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let replicator: Option<i64> =
        sqlx::query_scalar("delete from app.pipelines where id = $1 returning replicator_id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(replicator) = replicator {
        sqlx::query("delete from app.replicators where id = $1")
            .bind(replicator)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// The image name a replicator runs.
pub async fn image_of(pool: &PgPool, replicator_id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "select i.name from app.replicators r join app.images i on i.id = r.image_id \
         where r.id = $1",
    )
    .bind(replicator_id)
    .fetch_one(pool)
    .await
}

impl DesiredState {
    /// As stored in `app.pipelines.desired_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Stopped => "stopped",
            DesiredState::Started => "started",
        }
    }
}

/// A stored `desired_state` that is neither `stopped` nor `started`.
#[derive(Debug, thiserror::Error)]
#[error("unknown desired_state `{0}` (expected stopped or started)")]
pub struct UnknownDesiredState(String);

impl TryFrom<&str> for DesiredState {
    type Error = UnknownDesiredState;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        match value {
            "stopped" => Ok(DesiredState::Stopped),
            "started" => Ok(DesiredState::Started),
            other => Err(UnknownDesiredState(other.to_owned())),
        }
    }
}

impl sqlx::Type<Postgres> for DesiredState {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl sqlx::Encode<'_, Postgres> for DesiredState {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for DesiredState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Ok(DesiredState::try_from(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_states_round_trip_through_their_stored_text() {
        for state in [DesiredState::Stopped, DesiredState::Started] {
            assert_eq!(DesiredState::try_from(state.as_str()).ok(), Some(state));
        }
        let error = DesiredState::try_from("running").unwrap_err();
        assert!(error.to_string().contains("`running`"), "{error}");
    }
}
