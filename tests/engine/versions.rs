//! Which PostgreSQL major the test cluster runs, and skipping a test that needs a feature an
//! older major lacks, by name and with a message (the matrix runs every suite on 14 to 18).

use crate::helpers::Source;

/// The server's major version (`server_version_num / 10000`).
pub async fn server_major(source: &Source) -> u32 {
    let number: String = sqlx::query_scalar("show server_version_num")
        .fetch_one(&source.pool)
        .await
        .expect("read server_version_num");
    number.parse::<u32>().expect("a numeric server_version_num") / 10_000
}

/// Whether the server is at least `major`; when it is not, says that `test` is skipped because
/// `feature` needs `major`.
pub async fn requires(source: &Source, major: u32, test: &str, feature: &str) -> bool {
    let actual = server_major(source).await;
    if actual < major {
        eprintln!("skipped {test}: {feature} needs PostgreSQL {major}+, the server is {actual}");
    }
    actual >= major
}
