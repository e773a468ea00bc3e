//! `app.images`: exactly one image is the default once any exists.

use sqlx::PgPool;

use crate::api::domain::image::Image;

const COLUMNS: &str = "id, name, is_default";

/// Inserts an image; it becomes the default when asked or when it is the first one.
pub async fn create(pool: &PgPool, name: &str, is_default: bool) -> Result<Image, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Serialise default changes so two creates cannot both become the default.
    sqlx::query("lock table app.images in share row exclusive mode")
        .execute(&mut *tx)
        .await?;
    let any: bool = sqlx::query_scalar("select exists (select 1 from app.images)")
        .fetch_one(&mut *tx)
        .await?;
    let is_default = is_default || !any;
    if is_default {
        sqlx::query(
            "update app.images set is_default = false, updated_at = now() where is_default",
        )
        .execute(&mut *tx)
        .await?;
    }
    let image = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into app.images (name, is_default) values ($1, $2) returning {COLUMNS}"
    )))
    .bind(name)
    .bind(is_default)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(image)
}

pub async fn list(pool: &PgPool) -> Result<Vec<Image>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from app.images order by id"
    )))
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Image>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from app.images where id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn default_image(pool: &PgPool) -> Result<Option<Image>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from app.images where is_default"
    )))
    .fetch_optional(pool)
    .await
}

/// Why an image update was refused.
#[derive(Debug)]
pub enum UpdateOutcome {
    Updated(Image),
    NotFound,
    /// `is_default: false` on the default image.
    WouldLeaveNoDefault,
}

pub async fn update(
    pool: &PgPool,
    id: i64,
    name: Option<&str>,
    is_default: Option<bool>,
) -> Result<UpdateOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("lock table app.images in share row exclusive mode")
        .execute(&mut *tx)
        .await?;
    let current: Option<Image> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from app.images where id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(current) = current else {
        return Ok(UpdateOutcome::NotFound);
    };
    match is_default {
        Some(false) if current.is_default => return Ok(UpdateOutcome::WouldLeaveNoDefault),
        Some(true) if !current.is_default => {
            sqlx::query(
                "update app.images set is_default = false, updated_at = now() where is_default",
            )
            .execute(&mut *tx)
            .await?;
        }
        _ => {}
    }
    let image = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update app.images set name = coalesce($2, name), is_default = coalesce($3, is_default), \
         updated_at = now() where id = $1 returning {COLUMNS}"
    )))
    .bind(id)
    .bind(name)
    .bind(is_default)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(UpdateOutcome::Updated(image))
}

/// Why an image delete was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// The default image while other images exist.
    IsDefault,
}

/// Deletes an image. Replicators still using it make this fail with a foreign-key violation.
pub async fn delete(pool: &PgPool, id: i64) -> Result<DeleteOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("lock table app.images in share row exclusive mode")
        .execute(&mut *tx)
        .await?;
    let row: Option<(bool, i64)> = sqlx::query_as(
        "select is_default, (select count(*) from app.images) from app.images where id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        None => return Ok(DeleteOutcome::NotFound),
        Some((true, count)) if count > 1 => return Ok(DeleteOutcome::IsDefault),
        Some(_) => {}
    }
    sqlx::query("delete from app.images where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(DeleteOutcome::Deleted)
}
