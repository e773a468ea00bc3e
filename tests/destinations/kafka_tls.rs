//! The `kafka` destination over TLS (`security_protocol: ssl`) against the real test broker
//! behind a TLS-terminating proxy: `tansu` speaks plaintext only, so the test puts a rustls
//! server with a throwaway CA's certificate for `localhost` in front of it and has the broker
//! advertise the proxy's address. A copy, changes, the copied tables and the identity go through
//! TLS (the producer's transactions and the state topic's consumer); a consumer over TLS reads
//! the records back; a CA that did not sign the certificate gets no connection.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use etl::base::schema::{ReplicaIdentity, TableId};
use etl::config::KafkaDestinationConfig;
use etl::destinations::kafka::KafkaDestination;
use etl::engine::Destination;
use etl::engine::destination::PipelineIdentity;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;
use crate::kafka::TopicReader;
use crate::nats::{ops, repeated_ids};
use crate::servers::KafkaServer;

/// Handshakes the proxy completed and refused.
#[derive(Default)]
struct Handshakes {
    done: AtomicUsize,
    failed: AtomicUsize,
}

/// Accepts TLS on `listener` with `dir`'s `server.crt`/`server.key` and forwards each
/// connection's plaintext to `broker`.
fn tls_proxy(listener: TcpListener, dir: &Path, broker: String) -> Arc<Handshakes> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let handshakes = Arc::new(Handshakes::default());
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let broker = broker.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    counted.failed.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                counted.done.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut plain) = TcpStream::connect(&broker).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    handshakes
}

fn config(proxy: &str, ca: &Path) -> KafkaDestinationConfig {
    serde_yaml::from_str(&format!(
        "{{brokers: ['{proxy}'], topic_prefix: tls, security_protocol: ssl, \
         ssl_ca_location: '{}', properties: {{broker.address.family: v4}}}}",
        ca.display()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_and_changes_go_through_tls_and_a_foreign_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::certs::make_ca_and_localhost_cert(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("localhost:{}", listener.local_addr().unwrap().port());
    let Some(server) = KafkaServer::kafka_behind("tls", &proxy) else {
        return;
    };
    let handshakes = tls_proxy(listener, dir.path(), server.address.clone());
    let ca = dir.path().join("ca.crt");
    let config = config(&proxy, &ca);

    let table = Arc::new(simple_table(
        16_600,
        "public",
        "people",
        ReplicaIdentity::Default,
        true,
    ));
    let destination = KafkaDestination::new(&config, "shopdb");
    assert_eq!(destination.read_identity().await.unwrap(), None);
    destination.begin_copy(&table).await.unwrap();
    let chunk = etl::base::event::CopyChunk::new(bytes::Bytes::from("1\tann\t\\N\n2\tbob\tx\n"), 2);
    destination.write_copy_rows(&table, chunk).await.unwrap();
    destination.finish_copy(&table).await.unwrap();
    destination
        .write_events(vec![
            event(
                &table,
                1_000,
                0,
                insert(row(&[Some("3"), Some("cy"), None])),
            ),
            event(&table, 1_000, 1, delete(row(&[Some("1"), None, None]))),
        ])
        .await
        .unwrap();
    let identity = PipelineIdentity::new(8, "source-system".into(), destination.describe());
    destination.write_identity(&identity).await.unwrap();

    // A new instance reads the state topic back over TLS.
    let restarted = KafkaDestination::new(&config, "shopdb");
    assert_eq!(
        restarted.copied_tables().await.unwrap(),
        Some([TableId(16_600)].into())
    );
    assert_eq!(restarted.read_identity().await.unwrap(), Some(identity));

    // A consumer over TLS sees the copy, then the insert, the delete and its tombstone.
    let ca_path = ca.display().to_string();
    let mut reader = TopicReader::over_tls(&proxy, "tls", &ca_path);
    let messages = tokio::task::spawn_blocking(move || reader.read())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repeated_ids(&messages), Vec::<String>::new());
    assert_eq!(
        ops(&messages, "tls.public.people"),
        ["t", "r", "r", "c", "d", "tombstone"]
            .map(String::from)
            .to_vec()
    );
    assert!(
        handshakes.done.load(Ordering::SeqCst) > 0,
        "no connection went through the TLS proxy"
    );

    // A CA that did not sign the proxy's certificate: every handshake fails, nothing is read.
    let failed_before = handshakes.failed.load(Ordering::SeqCst);
    let foreign = KafkaDestination::new(&config_with_ca(&proxy, dir.path()), "shopdb");
    let refused = foreign.read_identity().await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        handshakes.failed.load(Ordering::SeqCst) > failed_before,
        "the client with a foreign CA should have aborted a handshake"
    );
}

/// The same settings trusting `other_ca.crt`, which signed nothing.
fn config_with_ca(proxy: &str, dir: &Path) -> KafkaDestinationConfig {
    config(proxy, &dir.join("other_ca.crt"))
}
