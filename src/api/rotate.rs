//! `etl api rotate-key`: re-encrypts every stored secret with the newest configured key, so an
//! old key can then be removed from `api.encryption_keys`. One transaction: either every row is
//! rotated or none is.

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

/// Re-encrypts every secret not yet encrypted with the newest key.
pub async fn rotate(pool: &PgPool, encryptor: &Encryptor) -> Result<RotationReport, RotationError> {
    let mut report = RotationReport {
        key_id: encryptor.newest_key_id(),
        ..RotationReport::default()
    };
    let mut tx = pool.begin().await?;
    for table in [ConfigTable::Sources, ConfigTable::Destinations] {
        for (id, config) in configured::lock_all(&mut tx, table).await? {
            let (rotated, changed) = secrets::reencrypt(config.0, encryptor).map_err(|source| {
                RotationError::Decrypt {
                    table: table.noun(),
                    id,
                    source,
                }
            })?;
            if changed > 0 {
                configured::set_config(&mut tx, table, id, &rotated).await?;
                report.rows += 1;
                report.values += changed;
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}
