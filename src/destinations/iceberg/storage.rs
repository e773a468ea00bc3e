//! Where an Iceberg destination's files go: a local (or mounted) directory, or an S3 bucket
//! (AWS or any S3-compatible store, through `iceberg-storage-opendal`). Owns the `FileIO` of
//! each and the check, at start, that the warehouse can be written.

use std::sync::Arc;

use iceberg::io::{
    FileIO, FileIOBuilder, S3_ACCESS_KEY_ID, S3_DISABLE_CONFIG_LOAD, S3_DISABLE_EC2_METADATA,
    S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY,
};
use iceberg_storage_opendal::OpenDalStorageFactory;

use crate::config::iceberg::{IcebergDestinationConfig, WarehouseKind};
use crate::engine::destination::{Error, Result};

/// The region of an S3 warehouse whose `iceberg.s3.region` is not set.
const DEFAULT_REGION: &str = "us-east-1";

/// The `FileIO` of `config`'s warehouse.
pub fn file_io(config: &IcebergDestinationConfig, kind: WarehouseKind) -> FileIO {
    match kind {
        WarehouseKind::Local => FileIO::new_with_fs(),
        WarehouseKind::S3 => {
            let s3 = config.s3.clone().unwrap_or_default();
            let mut builder = FileIOBuilder::new(Arc::new(OpenDalStorageFactory::S3 {
                customized_credential_load: None,
            }))
            .with_prop(S3_REGION, s3.region.as_deref().unwrap_or(DEFAULT_REGION))
            .with_prop(S3_PATH_STYLE_ACCESS, s3.path_style);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_prop(S3_ENDPOINT, endpoint.trim_end_matches('/'));
            }
            if let (Some(id), Some(key)) = (&s3.access_key_id, &s3.secret_access_key) {
                // Keys given: no look-up of ~/.aws or the instance metadata service.
                builder = builder
                    .with_prop(S3_ACCESS_KEY_ID, id.expose())
                    .with_prop(S3_SECRET_ACCESS_KEY, key.expose())
                    .with_prop(S3_DISABLE_CONFIG_LOAD, true)
                    .with_prop(S3_DISABLE_EC2_METADATA, true);
            }
            builder.build()
        }
    }
}

/// Makes sure the warehouse can be written: creates a local directory if missing; writes and
/// deletes a small object in a bucket (a missing bucket, wrong keys or an unreachable endpoint
/// are found here, with the warehouse named, rather than at the first commit).
pub async fn check_writable(
    config: &IcebergDestinationConfig,
    kind: WarehouseKind,
    io: &FileIO,
) -> Result<()> {
    match kind {
        WarehouseKind::Local => {
            let dir = config.warehouse_dir();
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::fatal(format!("cannot create the warehouse directory {dir}"), e)
            })
        }
        WarehouseKind::S3 => {
            let probe = format!(
                "{}/.etl-probe-{:016x}",
                config.warehouse.trim_end_matches('/'),
                rand::random::<u64>()
            );
            let written = match io.new_output(&probe) {
                Ok(output) => output.write(bytes::Bytes::from_static(b"etl")).await,
                Err(e) => Err(e),
            };
            let deleted = match written {
                Ok(()) => io.delete(&probe).await,
                Err(e) => Err(e),
            };
            deleted.map_err(|e| {
                Error::transient(
                    format!(
                        "cannot write to the warehouse {} (endpoint {}): check the bucket, \
                         iceberg.s3 and the credentials",
                        config.warehouse,
                        config
                            .s3
                            .as_ref()
                            .and_then(|s3| s3.endpoint.as_deref())
                            .unwrap_or("AWS")
                    ),
                    e,
                )
            })
        }
    }
}
