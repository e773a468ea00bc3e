//! `app.tenants`.

use sqlx::PgPool;

use crate::api::domain::tenant::Tenant;

pub async fn create(pool: &PgPool, id: &str, name: &str) -> Result<Tenant, sqlx::Error> {
    sqlx::query_as("insert into app.tenants (id, name) values ($1, $2) returning id, name")
        .bind(id)
        .bind(name)
        .fetch_one(pool)
        .await
}

/// Creates the tenant or renames it; `true` when it was created.
pub async fn upsert(pool: &PgPool, id: &str, name: &str) -> Result<(Tenant, bool), sqlx::Error> {
    let (id, name, created): (String, String, bool) = sqlx::query_as(
        "insert into app.tenants (id, name) values ($1, $2) \
         on conflict (id) do update set name = excluded.name, updated_at = now() \
         returning id, name, (xmax = 0) as created",
    )
    .bind(id)
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok((Tenant { id, name }, created))
}

pub async fn list(pool: &PgPool) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as("select id, name from app.tenants order by id")
        .fetch_all(pool)
        .await
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as("select id, name from app.tenants where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn update(pool: &PgPool, id: &str, name: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(
        "update app.tenants set name = $2, updated_at = now() where id = $1 returning id, name",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Deletes the tenant and everything it owns; `false` when there was no such tenant.
pub async fn delete(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Pipelines reference sources and destinations without cascading: remove them first.
    sqlx::query("delete from app.pipelines where tenant_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("delete from app.tenants where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted > 0)
}
