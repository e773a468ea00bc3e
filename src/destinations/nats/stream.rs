//! The destination's stream: found (and checked to take the destination's subjects and allow
//! purges) or created with file storage when missing.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::Context;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};

use crate::config::NatsDestinationConfig;
use crate::engine::destination::{Error, Result};

/// What the stream must be.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    /// `{prefix}.>`
    pub subjects: String,
    /// Used when the stream is created.
    pub duplicate_window: Duration,
}

impl StreamSpec {
    pub fn new(config: &NatsDestinationConfig) -> Self {
        StreamSpec {
            name: config.stream_name(),
            subjects: format!("{}.>", config.subject_prefix),
            duplicate_window: Duration::from_secs(config.duplicate_window_secs),
        }
    }
}

/// The stream, created when missing; an existing one must take `{prefix}.>`.
pub async fn ensure_stream(context: &Context, spec: &StreamSpec) -> Result<Stream> {
    let name = spec.name.clone();
    let wanted = spec.subjects.clone();
    match context.get_stream(&name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| Error::transient(format!("reading stream {name}"), e))?;
            let subjects = &info.config.subjects;
            if !subjects.iter().any(|s| s == &wanted || s == ">") {
                return Err(Error::Fatal {
                    message: format!(
                        "stream {name} takes the subjects {subjects:?}, not {wanted}: set \
                         nats.stream to another stream or add {wanted} to its subjects"
                    ),
                    source: None,
                });
            }
            if info.config.sealed || info.config.deny_purge {
                return Err(Error::Fatal {
                    message: format!(
                        "stream {name} is sealed or denies purges; the destination needs both \
                         to write and to purge a table's subject before its copy"
                    ),
                    source: None,
                });
            }
            Ok(stream)
        }
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(error)
                if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                create_stream(context, spec).await
            }
            _ => Err(Error::transient(format!("looking up stream {name}"), e)),
        },
    }
}

async fn create_stream(context: &Context, spec: &StreamSpec) -> Result<Stream> {
    let name = &spec.name;
    let stream_config = StreamConfig {
        name: name.clone(),
        subjects: vec![spec.subjects.clone()],
        storage: StorageType::File,
        duplicate_window: spec.duplicate_window,
        allow_direct: true,
        ..Default::default()
    };
    context
        .create_stream(stream_config)
        .await
        .map_err(|e| Error::transient(format!("creating stream {name}"), e))
}
