//! Sealing stored secrets again, in one transaction (every row or none):
//!
//! - `etl api rotate-key` ([`rotate`]): every secret not encrypted with the newest configured
//!   key is re-encrypted with it, so an old key can then be removed from
//!   `api.encryption_keys`;
//! - both that and the start of `etl serve-api` ([`bind_unbound`]) seal the rows written before
//!   secrets were bound to their place (migration `20261202000001_bound_secrets`) again, bound.
//!   SQL cannot do that part of the migration: only the control plane has the keys.

use sqlx::PgPool;

use super::crypto::{CryptoError, Encryptor};
use super::db::configured::{self, ConfigTable};
use super::secrets;

/// What a rotation changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Rows (sources and destinations) with at least one re-encrypted value.
    pub rows: usize,
    /// Secret values re-encrypted.
    pub values: usize,
    /// The key everything is now encrypted with.
    pub key_id: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{table} {id}: {source}")]
    Decrypt {
        table: &'static str,
        id: i64,
        #[source]
        source: CryptoError,
    },
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Re-encrypts every secret not yet encrypted with the newest key, and binds unbound rows.
pub async fn rotate(pool: &PgPool, encryptor: &Encryptor) -> Result<RotationReport, RotationError> {
    reseal_rows(pool, encryptor, false).await
}

/// Seals the rows written before secrets were bound to their place again, bound.
pub async fn bind_unbound(
    pool: &PgPool,
    encryptor: &Encryptor,
) -> Result<RotationReport, RotationError> {
    reseal_rows(pool, encryptor, true).await
}

async fn reseal_rows(
    pool: &PgPool,
    encryptor: &Encryptor,
    unbound_only: bool,
) -> Result<RotationReport, RotationError> {
    let mut report = RotationReport {
        key_id: encryptor.newest_key_id(),
        ..RotationReport::default()
    };
    let mut tx = pool.begin().await?;
    for table in [ConfigTable::Sources, ConfigTable::Destinations] {
        for row in configured::lock_all(&mut tx, table, unbound_only).await? {
            let context = table.seal_context(&row.tenant_id, row.id);
            let (sealed, changed) =
                secrets::reseal(row.config.0, encryptor, &context, row.secrets_bound).map_err(
                    |source| RotationError::Decrypt {
                        table: table.noun(),
                        id: row.id,
                        source,
                    },
                )?;
            if changed > 0 || !row.secrets_bound {
                configured::set_config(&mut tx, table, row.id, &sealed).await?;
            }
            if changed > 0 {
                report.rows += 1;
                report.values += changed;
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}
