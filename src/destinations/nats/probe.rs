//! What the control plane's `validate` asks of a `nats` destination before a pipeline uses it:
//! the server answers with the configured credentials, JetStream is enabled for the account,
//! and the stream either exists, takes `{subject_prefix}.>` and accepts writes and purges, or
//! can be created (the account has room for one more stream). Nothing is written.

use async_nats::jetstream;

use super::{connect_client, public_urls};
use crate::base::error_chain;
use crate::config::NatsDestinationConfig;

/// The `host:port` pairs of the configured URLs (for the network policy); the port defaults
/// to 4222. `None` names the URL that cannot be read.
pub fn addresses(config: &NatsDestinationConfig) -> Result<Vec<(String, u16)>, String> {
    config
        .url
        .expose()
        .split(',')
        .map(|url| {
            let url = url.trim();
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split('/').next().unwrap_or(rest);
            let (host, port) = match rest.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| format!("`{}` has no valid port", public_urls(url)))?;
                    (host, port)
                }
                _ => (rest, 4222),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("`{}` has no host", public_urls(url)));
            }
            Ok((host.to_owned(), port))
        })
        .collect()
}

/// Connects and checks the stream can be written; the error says what failed, in one line.
pub async fn probe(config: &NatsDestinationConfig) -> Result<(), String> {
    let client = connect_client(config, false)
        .await
        .map_err(|e| error_chain(&e))?;
    let context = jetstream::new(client);
    let account = context
        .query_account()
        .await
        .map_err(|e| format!("JetStream is not available for this account: {e}"))?;
    let name = config.stream_name();
    let wanted = format!("{}.>", config.subject_prefix);
    match context.get_stream(&name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| format!("reading stream {name}: {e}"))?;
            if !info
                .config
                .subjects
                .iter()
                .any(|s| s == &wanted || s == ">")
            {
                return Err(format!(
                    "stream {name} takes the subjects {:?}, not {wanted}",
                    info.config.subjects
                ));
            }
            if info.config.sealed || info.config.deny_purge {
                return Err(format!("stream {name} is sealed or denies purges"));
            }
            Ok(())
        }
        Err(e) if !is_not_found(&e) => Err(format!("looking up stream {name}: {e}")),
        Err(_) => match account.limits.max_streams {
            Some(max) if max >= 0 && account.streams as i64 >= max => Err(format!(
                "stream {name} does not exist and the account may not create another stream \
                 ({} of {max})",
                account.streams
            )),
            _ => Ok(()),
        },
    }
}

fn is_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> NatsDestinationConfig {
        serde_yaml::from_str(&format!("url: '{url}'")).unwrap()
    }

    #[test]
    fn addresses_of_the_urls_ignore_credentials_and_default_the_port() {
        assert_eq!(
            addresses(&config("nats://u:p@example.com:4333, tls://other")).unwrap(),
            vec![("example.com".to_owned(), 4333), ("other".to_owned(), 4222)]
        );
        assert_eq!(
            addresses(&config("[::1]:5000")).unwrap(),
            vec![("::1".to_owned(), 5000)]
        );
        assert!(
            addresses(&config("nats://h:x"))
                .unwrap_err()
                .contains("port")
        );
    }
}
