//! Secret values in configuration: passwords, keys, tokens and URLs that may embed a password.
//!
//! [`Secret`] wraps [`secrecy::SecretString`] so that `Debug`, logs and `etl config show` never
//! print it, and so that a value that looks like a number (`APP_…__PASSWORD=007`) still loads as
//! the exact string the user wrote.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// What `Debug`, `Display` and serialization show instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret string: redacted everywhere except through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret itself, for the one place that must hand it to a server.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringLike).map(Secret::new)
    }
}

/// A `postgres://` URL that may carry a password: shown with the password masked.
#[derive(Clone, PartialEq)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Secret::new(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with its password (if any) replaced by [`REDACTED`].
    pub fn redacted(&self) -> String {
        redact_url_password(self.expose())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringLike).map(SecretUrl::new)
    }
}

/// Replaces the password of `scheme://user:password@host…` with [`REDACTED`]; other strings are
/// returned unchanged.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{}{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            REDACTED,
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Accepts a string, or a number or boolean that an environment variable was parsed into, and
/// yields its text.
pub(crate) struct StringLike;

impl Visitor<'_> for StringLike {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn url_password_is_masked_but_the_rest_is_kept() {
        assert_eq!(
            redact_url_password("postgres://app:s3cr@t@db.example:5432/x?sslmode=require"),
            "postgres://app:[redacted]@db.example:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url_password("postgres://app@db/x"),
            "postgres://app@db/x"
        );
        assert_eq!(redact_url_password("not a url"), "not a url");
    }
}
