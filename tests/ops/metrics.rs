//! The metrics endpoint served over HTTP and scraped like Prometheus would.

use std::net::SocketAddr;

use etl::base::schema::TableName;
use etl::engine::metrics::{Error, Metrics, serve};
use tokio::sync::oneshot;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

#[tokio::test]
async fn metrics_are_scraped_over_http_until_shutdown() {
    let metrics = Metrics::new();
    let addr = free_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(metrics.clone(), addr, async {
        let _ = stopped.await;
    }));
    let orders = TableName::new("public", "orders");
    metrics.rows_copied(&orders, 1000);
    metrics.table_state(&orders, "ready");
    metrics.events_applied(7);
    metrics.confirmed_lsn("0/16B3748".parse().unwrap());

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let mut response = None;
    for _ in 0..50 {
        match client.get(&url).send().await {
            Ok(r) => {
                response = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let response = response.expect("metrics endpoint answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = response.text().await.unwrap();
    for expected in [
        "etl_rows_copied_total{schema=\"public\",table=\"orders\"} 1000",
        "etl_table_state{schema=\"public\",table=\"orders\",state=\"ready\"} 1",
        "etl_events_applied_total 7",
        &format!("etl_confirmed_lsn {}", 0x16B3748),
        "# TYPE etl_slot_lag_bytes gauge",
    ] {
        assert!(
            body.lines().any(|l| l == expected),
            "{expected} not in:\n{body}"
        );
    }

    // A later update shows in the next scrape.
    metrics.events_applied(3);
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        body.lines().any(|l| l == "etl_events_applied_total 10"),
        "{body}"
    );

    let missing = client
        .get(format!("http://{addr}/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(client.get(&url).send().await.is_err(), "stopped serving");
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = serve(Metrics::new(), addr, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
