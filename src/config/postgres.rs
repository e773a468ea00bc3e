//! Connection settings for a PostgreSQL server, shared by the control-plane database, the
//! replication source and Postgres destinations.
//!
//! Users give either a URL or discrete fields; discrete fields override the URL's parts, so a pod
//! can keep a password-less URL in its ConfigMap and receive `APP_…__PASSWORD` from a Secret.
//! [`PgConnectionConfig::resolve`] turns both into one [`PgConnection`] that every client is
//! built from; nobody else assembles URLs by hand.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::secret::{Secret, SecretUrl};

/// As written in a config file or variables.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PgConnectionConfig {
    /// `postgres://user:password@host:port/name?sslmode=…`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// TLS settings of a connection.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file of root certificates to trust (default: the bundled web PKI roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The libpq `sslmode` values we support.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => TlsMode::Disable,
            // libpq's `allow` tries plain first; we treat it like `prefer`.
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown TLS mode `{other}`: expected disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// A complete, validated set of connection parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PgConnection {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub username: String,
    pub password: Option<Secret>,
    pub tls: TlsConfig,
}

/// Why connection settings cannot be used; `Display` names the offending part.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionConfigError {
    #[error("neither `url` nor `host` is set")]
    Missing,
    #[error("`url` is not a valid postgres URL: {0}")]
    BadUrl(String),
    #[error("`url` has an invalid `{key}` parameter: {message}")]
    BadUrlParameter { key: String, message: String },
}

impl PgConnectionConfig {
    /// A config holding only a URL.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(SecretUrl::new(url)),
            ..Self::default()
        }
    }

    /// Merges the URL (if any) with the discrete fields, which win.
    pub fn resolve(&self) -> Result<PgConnection, ConnectionConfigError> {
        let mut conn = match &self.url {
            Some(url) => parse_url(url.expose())?,
            None if self.host.is_some() => PgConnection {
                host: String::new(),
                port: 5432,
                name: String::new(),
                username: "postgres".to_owned(),
                password: None,
                tls: TlsConfig::default(),
            },
            None => return Err(ConnectionConfigError::Missing),
        };
        if let Some(host) = &self.host {
            conn.host = host.clone();
        }
        if let Some(port) = self.port {
            conn.port = port;
        }
        if let Some(username) = &self.username {
            conn.username = username.clone();
        }
        if let Some(name) = &self.name {
            conn.name = name.clone();
        }
        if conn.name.is_empty() {
            conn.name = conn.username.clone();
        }
        if let Some(password) = &self.password {
            conn.password = Some(password.clone());
        }
        if let Some(tls) = &self.tls {
            conn.tls = tls.clone();
        }
        Ok(conn)
    }
}

fn parse_url(raw: &str) -> Result<PgConnection, ConnectionConfigError> {
    let url = url::Url::parse(raw).map_err(|e| ConnectionConfigError::BadUrl(e.to_string()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(ConnectionConfigError::BadUrl(format!(
            "scheme `{}` is not postgres:// or postgresql://",
            url.scheme()
        )));
    }
    let decode = |s: &str| {
        percent_decode(s).map_err(|e| ConnectionConfigError::BadUrl(format!("bad escape: {e}")))
    };
    // A percent-encoded path as the host (`postgres://%2Fvar%2Frun%2Fpostgresql/db`) names a
    // Unix-socket directory, as in libpq.
    let host = match url.host_str() {
        None | Some("") => "localhost".to_owned(),
        Some(host) => decode(host)?,
    };
    let mut host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let mut port = url.port().unwrap_or(5432);
    let username = match url.username() {
        "" => "postgres".to_owned(),
        user => decode(user)?,
    };
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    let name = decode(url.path().trim_start_matches('/'))?;
    let mut tls = TlsConfig::default();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => {
                tls.mode =
                    value
                        .parse()
                        .map_err(|message| ConnectionConfigError::BadUrlParameter {
                            key: "sslmode".into(),
                            message,
                        })?
            }
            "sslrootcert" => tls.ca_file = Some(PathBuf::from(value.as_ref())),
            // libpq's `?host=/var/run/postgresql` (a socket directory) and `?port=`.
            "host" => host = value.into_owned(),
            "port" => {
                port = value
                    .parse()
                    .map_err(|_| ConnectionConfigError::BadUrlParameter {
                        key: "port".into(),
                        message: format!("`{value}` is not a port number"),
                    })?
            }
            // Other libpq parameters (application_name, options, …) do not change how we connect.
            _ => {}
        }
    }
    Ok(PgConnection {
        host,
        port,
        name,
        username,
        password,
        tls,
    })
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
}

impl PgConnection {
    /// The server's Unix-domain socket when `host` is a directory (starts with `/`, as in
    /// libpq): `{host}/.s.PGSQL.{port}`.
    pub fn socket_path(&self) -> Option<String> {
        self.host
            .starts_with('/')
            .then(|| format!("{}/.s.PGSQL.{}", self.host.trim_end_matches('/'), self.port))
    }

    /// Options for an sqlx pool or connection to this server.
    pub fn sqlx_options(&self) -> PgConnectOptions {
        // As libpq, no TLS on a Unix-domain socket (the server would refuse the request).
        let mode = if self.socket_path().is_some() {
            TlsMode::Disable
        } else {
            self.tls.mode
        };
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&self.username)
            .ssl_mode(match mode {
                TlsMode::Disable => PgSslMode::Disable,
                TlsMode::Prefer => PgSslMode::Prefer,
                TlsMode::Require => PgSslMode::Require,
                TlsMode::VerifyCa => PgSslMode::VerifyCa,
                TlsMode::VerifyFull => PgSslMode::VerifyFull,
            })
            .application_name("etl");
        if let Some(password) = &self.password {
            options = options.password(password.expose());
        }
        if let Some(ca) = &self.tls.ca_file {
            options = options.ssl_root_cert(ca);
        }
        options
    }

    /// `user@host:port/name` (`user@[socket]/name` on a Unix socket) for log lines and errors
    /// (never the password).
    pub fn describe(&self) -> String {
        if let Some(socket) = self.socket_path() {
            return format!("{}@[{socket}]/{}", self.username, self.name);
        }
        format!(
            "{}@{}:{}/{}",
            self.username, self.host, self.port, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_fields_override_the_url() {
        let config = PgConnectionConfig {
            url: Some(SecretUrl::new(
                "postgres://app:old@db.internal:6000/orders?sslmode=require",
            )),
            password: Some(Secret::new("new")),
            port: Some(7000),
            ..Default::default()
        };
        let conn = config.resolve().unwrap();
        assert_eq!(conn.host, "db.internal");
        assert_eq!(conn.port, 7000);
        assert_eq!(conn.name, "orders");
        assert_eq!(conn.username, "app");
        assert_eq!(conn.password.unwrap().expose(), "new");
        assert_eq!(conn.tls.mode, TlsMode::Require);
    }

    #[test]
    fn url_escapes_are_decoded() {
        let conn = PgConnectionConfig::from_url("postgres://us%40er:p%2Fw@h/d%20b")
            .resolve()
            .unwrap();
        assert_eq!(conn.username, "us@er");
        assert_eq!(conn.password.unwrap().expose(), "p/w");
        assert_eq!(conn.name, "d b");
    }

    #[test]
    fn a_directory_as_host_is_a_unix_socket() {
        for url in [
            "postgres://app@%2Fvar%2Frun%2Fpostgresql:5433/shop",
            "postgres:///shop?host=/var/run/postgresql&port=5433",
            "postgresql:///shop?host=%2Fvar%2Frun%2Fpostgresql%2F&port=5433&user=x",
        ] {
            let conn = PgConnectionConfig::from_url(url).resolve().unwrap();
            assert_eq!(
                conn.socket_path().as_deref(),
                Some("/var/run/postgresql/.s.PGSQL.5433"),
                "{url}"
            );
            assert_eq!(conn.name, "shop", "{url}");
        }
        let tcp = PgConnectionConfig::from_url("postgres://h:5433/shop").resolve();
        assert_eq!(tcp.unwrap().socket_path(), None);
        let bad = PgConnectionConfig::from_url("postgres:///shop?port=many").resolve();
        assert!(
            matches!(&bad, Err(ConnectionConfigError::BadUrlParameter { key, .. }) if key == "port"),
            "{bad:?}"
        );
    }

    #[test]
    fn database_name_defaults_to_the_user() {
        let config = PgConnectionConfig {
            host: Some("localhost".into()),
            username: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(config.resolve().unwrap().name, "alice");
    }

    #[test]
    fn bad_input_names_the_problem() {
        assert_eq!(
            PgConnectionConfig::default().resolve(),
            Err(ConnectionConfigError::Missing)
        );
        let err = PgConnectionConfig::from_url("mysql://x/y")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("mysql"), "{err}");
        let err = PgConnectionConfig::from_url("postgres://x/y?sslmode=sometimes")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("sslmode"), "{err}");
    }
}
