//! Secret fields inside source and destination configs, found by name the same way the
//! configuration loader finds them (`password`, `url`, any key containing `key`, `token` or
//! `secret`: [`is_secret_key`]).
//!
//! A config travels through four shapes: the plain JSON a user sends; the *sealed* JSON stored
//! in `app.sources` / `app.destinations`, where each secret is an [`EncryptedValue`]; the
//! *redacted* JSON a GET returns, where each secret is replaced by `"{name}_set": true`; and the
//! replicator's config, where each secret is moved out into an `APP_…` variable.
//!
//! Only plain text comes in: a client never sends a sealed value ([`check_plain`] refuses one),
//! and each value is sealed bound to its [`SealContext`] (tenant, object kind, object id, field),
//! so a ciphertext copied anywhere else does not open. Rows sealed before that binding existed
//! (`secrets_bound = false`) are opened once without it and sealed again ([`reseal`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::crypto::{CryptoError, EncryptedValue, Encryptor};
use crate::config::env_vars::is_secret_key;
use crate::config::{AppEnv, Secret};

/// Where a sealed value belongs; it is the associated data of its encryption, with the field.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    pub tenant_id: &'a str,
    /// `source` or `destination`.
    pub kind: &'a str,
    pub object_id: i64,
}

impl SealContext<'_> {
    /// The associated data of the field at `path` (`postgres.password`): unambiguous, and
    /// never empty, so it differs from that of values sealed before binding.
    fn associated(&self, path: &str) -> Vec<u8> {
        serde_json::json!([
            "etl-secret/2",
            self.tenant_id,
            self.kind,
            self.object_id,
            path
        ])
        .to_string()
        .into_bytes()
    }
}

/// Associated data of values sealed before they were bound to their place.
const UNBOUND: &[u8] = b"";

/// Refuses a config whose secret fields hold anything but plain values (a sealed-looking
/// object, an array): a client writes a secret as text, or leaves it out to keep it. The error
/// names the field below `config`.
pub fn check_plain(config: &Value) -> Result<(), String> {
    let mut refused = None;
    map_secrets(config.clone(), &mut Vec::new(), &mut |path, value| {
        if (value.is_object() || value.is_array()) && refused.is_none() {
            refused = Some(format!(
                "`config.{path}` must be plain text: sealed or structured values are never \
                 accepted for a secret (leave it out to keep the stored one)"
            ));
        }
        value
    });
    refused.map_or(Ok(()), Err)
}

/// Replaces every secret leaf by its encryption with the newest key, bound to `context` and its
/// field. Text is sealed as is, any other non-null value as its JSON text.
pub fn seal(config: Value, encryptor: &Encryptor, context: &SealContext<'_>) -> Value {
    map_secrets(config, &mut Vec::new(), &mut |path, value| {
        let text = match value {
            Value::Null => return Value::Null,
            Value::String(text) => text,
            other => other.to_string(),
        };
        to_json(&encryptor.encrypt(&text, &context.associated(path)))
    })
}

/// Decrypts every sealed secret leaf back into its plain text; a value sealed for another
/// place fails.
pub fn open(
    config: Value,
    encryptor: &Encryptor,
    context: &SealContext<'_>,
) -> Result<Value, CryptoError> {
    open_with(config, encryptor, &|path| context.associated(path))
}

fn open_with(
    config: Value,
    encryptor: &Encryptor,
    associated: &dyn Fn(&str) -> Vec<u8>,
) -> Result<Value, CryptoError> {
    let mut failure = None;
    let opened = map_secrets(
        config,
        &mut Vec::new(),
        &mut |path, value| match as_sealed(&value) {
            Some(sealed) => match encryptor.decrypt(&sealed, &associated(path)) {
                Ok(secret) => Value::String(secret.expose().to_owned()),
                Err(e) => {
                    failure.get_or_insert(e);
                    Value::Null
                }
            },
            None => value,
        },
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(opened),
    }
}

/// Seals again what needs it: with `bound`, the values not encrypted with the newest key;
/// without (a row sealed before binding), every value, now bound to `context`. Returns the new
/// config and how many values changed.
pub fn reseal(
    config: Value,
    encryptor: &Encryptor,
    context: &SealContext<'_>,
    bound: bool,
) -> Result<(Value, usize), CryptoError> {
    let newest = encryptor.newest_key_id();
    let mut stale = 0;
    map_secrets(config.clone(), &mut Vec::new(), &mut |_, value| {
        if as_sealed(&value).is_some_and(|v| !bound || v.key_id != newest) {
            stale += 1;
        }
        value
    });
    if stale == 0 {
        return Ok((config, 0));
    }
    let plain = if bound {
        open(config, encryptor, context)?
    } else {
        open_with(config, encryptor, &|_| UNBOUND.to_vec())?
    };
    Ok((seal(plain, encryptor, context), stale))
}

/// The config as a GET shows it: each secret leaf `name` replaced by `name_set: true`.
pub fn redact(config: Value) -> Value {
    match config {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if is_secret_key(&key) {
                    if !value.is_null() {
                        out.insert(format!("{key}_set"), Value::Bool(true));
                    }
                } else {
                    out.insert(key, redact(value));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// For an update: secret leaves the new (plain) config leaves out keep their stored value,
/// taken from the stored config opened for this object, so a client can change a host without
/// sending the password again.
pub fn keep_omitted_secrets(new: &mut Value, stored: &Value) {
    let (Value::Object(new), Value::Object(stored)) = (new, stored) else {
        return;
    };
    for (key, old) in stored {
        match new.get_mut(key) {
            None if is_secret_key(key) => {
                new.insert(key.clone(), old.clone());
            }
            Some(child) => keep_omitted_secrets(child, old),
            None => {}
        }
    }
}

/// Splits a plain config into the config without secrets and the secrets as `APP_` variables
/// named after their path below `prefix` (`["pipeline", "pg_connection"]` + `password` →
/// `APP_PIPELINE__PG_CONNECTION__PASSWORD`).
pub fn extract(config: Value, prefix: &[&str]) -> (Value, BTreeMap<String, Secret>) {
    let mut secrets = BTreeMap::new();
    let mut path: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
    let value = extract_into(config, &mut path, &mut secrets);
    (value, secrets)
}

fn extract_into(
    config: Value,
    path: &mut Vec<String>,
    secrets: &mut BTreeMap<String, Secret>,
) -> Value {
    let Value::Object(map) = config else {
        return config;
    };
    let mut out = Map::new();
    for (key, value) in map {
        path.push(key.clone());
        if is_secret_key(&key) {
            let text = match value {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            };
            if let Some(text) = text {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                secrets.insert(AppEnv::variable_name(&names), Secret::new(text));
            }
        } else {
            out.insert(key, extract_into(value, path, secrets));
        }
        path.pop();
    }
    Value::Object(out)
}

fn as_sealed(value: &Value) -> Option<EncryptedValue> {
    if value.is_object() {
        serde_json::from_value(value.clone()).ok()
    } else {
        None
    }
}

fn to_json(value: &EncryptedValue) -> Value {
    serde_json::json!({
        "key_id": value.key_id,
        "nonce": value.nonce,
        "ciphertext": value.ciphertext,
    })
}

/// Applies `f` to the value of every secret key, anywhere in the tree, with its path
/// (`postgres.password`, array items by index).
fn map_secrets(
    config: Value,
    path: &mut Vec<String>,
    f: &mut impl FnMut(&str, Value) -> Value,
) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    path.push(key.clone());
                    let value = if is_secret_key(&key) {
                        f(&path.join("."), value)
                    } else {
                        map_secrets(value, path, f)
                    };
                    path.pop();
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    path.push(i.to_string());
                    let v = map_secrets(v, path, f);
                    path.pop();
                    v
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncryptionKeyConfig;
    use crate::config::api::generate_key;
    use serde_json::json;

    fn key(id: u32) -> EncryptionKeyConfig {
        EncryptionKeyConfig {
            id,
            key: Secret::new(generate_key()),
        }
    }

    const HERE: SealContext<'static> = SealContext {
        tenant_id: "acme",
        kind: "destination",
        object_id: 1,
    };

    #[test]
    fn sealed_configs_hold_no_plain_secret_and_open_back() {
        let enc = Encryptor::new(&[key(1)]).unwrap();
        let plain = json!({"postgres": {"host": "h", "password": "pw-123", "schema": "s"}});
        let sealed = seal(plain.clone(), &enc, &HERE);
        assert!(!sealed.to_string().contains("pw-123"));
        assert_eq!(sealed["postgres"]["password"]["key_id"], json!(1));
        assert_eq!(sealed["postgres"]["host"], json!("h"));
        assert_eq!(open(sealed.clone(), &enc, &HERE).unwrap(), plain);
        assert_eq!(
            redact(sealed),
            json!({"postgres": {"host": "h", "password_set": true, "schema": "s"}})
        );
    }

    #[test]
    fn a_sealed_value_opens_nowhere_but_its_tenant_object_and_field() {
        let enc = Encryptor::new(&[key(1)]).unwrap();
        let sealed = seal(json!({"password": "pw", "token": "t"}), &enc, &HERE);
        for (context, description) in [
            (
                SealContext {
                    tenant_id: "evil",
                    ..HERE
                },
                "another tenant",
            ),
            (
                SealContext {
                    kind: "source",
                    ..HERE
                },
                "another kind of object",
            ),
            (
                SealContext {
                    object_id: 2,
                    ..HERE
                },
                "another object",
            ),
        ] {
            assert!(
                open(sealed.clone(), &enc, &context).is_err(),
                "{description}"
            );
        }
        let moved = json!({"password": sealed["token"].clone()});
        assert!(open(moved, &enc, &HERE).is_err(), "another field");
    }

    #[test]
    fn sealed_or_structured_secrets_from_a_client_are_refused_naming_the_field() {
        let enc = Encryptor::new(&[key(1)]).unwrap();
        let sealed = seal(json!({"password": "pw"}), &enc, &HERE);
        let message =
            check_plain(&json!({"postgres": {"password": sealed["password"]}})).unwrap_err();
        assert!(message.contains("`config.postgres.password`"), "{message}");
        assert!(check_plain(&json!({"postgres": {"token": ["x"]}})).is_err());
        assert_eq!(
            check_plain(&json!({"postgres": {"password": "pw"}})),
            Ok(())
        );
    }

    #[test]
    fn omitted_secrets_are_kept_on_update() {
        let mut new = json!({"host": "b"});
        keep_omitted_secrets(&mut new, &json!({"host": "a", "password": "old"}));
        assert_eq!(new, json!({"host": "b", "password": "old"}));
    }

    #[test]
    fn secrets_become_app_variables() {
        let (config, secrets) = extract(
            json!({"host": "h", "password": "pw", "tls": {"mode": "disable"}}),
            &["pipeline", "pg_connection"],
        );
        assert_eq!(config, json!({"host": "h", "tls": {"mode": "disable"}}));
        assert_eq!(
            secrets["APP_PIPELINE__PG_CONNECTION__PASSWORD"].expose(),
            "pw"
        );
        assert_eq!(secrets.len(), 1);
    }

    #[test]
    fn reseal_moves_old_values_to_the_newest_key_and_binds_unbound_ones() {
        let (k1, k2) = (key(1), key(2));
        let old = Encryptor::new(std::slice::from_ref(&k1)).unwrap();
        let both = Encryptor::new(&[k1, k2.clone()]).unwrap();
        let plain = json!({"password": "p", "nested": {"token": "t"}});
        let sealed = seal(plain.clone(), &old, &HERE);
        let (rotated, changed) = reseal(sealed, &both, &HERE, true).unwrap();
        assert_eq!(changed, 2);
        assert_eq!(rotated["nested"]["token"]["key_id"], json!(2));
        let only_new = Encryptor::new(&[k2]).unwrap();
        assert_eq!(open(rotated.clone(), &only_new, &HERE).unwrap(), plain);
        assert_eq!(reseal(rotated, &both, &HERE, true).unwrap().1, 0);

        // A value sealed before binding (no associated data) opens only through reseal.
        let unbound = json!({"password": to_json(&only_new.encrypt("p", UNBOUND))});
        assert!(open(unbound.clone(), &only_new, &HERE).is_err());
        let (bound, changed) = reseal(unbound, &only_new, &HERE, false).unwrap();
        assert_eq!(changed, 1);
        assert_eq!(
            open(bound, &only_new, &HERE).unwrap(),
            json!({"password": "p"})
        );
    }
}
