//! Secret fields inside source and destination configs, found by name the same way the
//! configuration loader finds them (`password`, `url`, any key containing `key`, `token` or
//! `secret`: [`is_secret_key`]).
//!
//! A config travels through four shapes: the plain JSON a user sends; the *sealed* JSON stored
//! in `app.sources` / `app.destinations`, where each secret is an [`EncryptedValue`]; the
//! *redacted* JSON a GET returns, where each secret is replaced by `"{name}_set": true`; and the
//! replicator's config, where each secret is moved out into an `APP_…` variable.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::crypto::{CryptoError, EncryptedValue, Encryptor};
use crate::config::env_vars::is_secret_key;
use crate::config::{AppEnv, Secret};

/// Replaces every secret leaf by its encryption with the newest key.
pub fn seal(config: Value, encryptor: &Encryptor) -> Value {
    map_secrets(config, &mut |value| match value {
        Value::String(text) => to_json(&encryptor.encrypt(&text)),
        Value::Number(n) => to_json(&encryptor.encrypt(&n.to_string())),
        Value::Bool(b) => to_json(&encryptor.encrypt(&b.to_string())),
        // Already sealed (kept from the stored row) or null: unchanged.
        other => other,
    })
}

/// Decrypts every sealed secret leaf back into its plain text.
pub fn open(config: Value, encryptor: &Encryptor) -> Result<Value, CryptoError> {
    let mut failure = None;
    let opened = map_secrets(config, &mut |value| match as_sealed(&value) {
        Some(sealed) => match encryptor.decrypt(&sealed) {
            Ok(secret) => Value::String(secret.expose().to_owned()),
            Err(e) => {
                failure.get_or_insert(e);
                Value::Null
            }
        },
        None => value,
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(opened),
    }
}

/// Re-encrypts every sealed leaf not encrypted with the newest key; returns how many changed.
pub fn reencrypt(config: Value, encryptor: &Encryptor) -> Result<(Value, usize), CryptoError> {
    let mut failure = None;
    let mut changed = 0;
    let newest = encryptor.newest_key_id();
    let value = map_secrets(config, &mut |value| match as_sealed(&value) {
        Some(sealed) if sealed.key_id != newest => match encryptor.decrypt(&sealed) {
            Ok(secret) => {
                changed += 1;
                to_json(&encryptor.encrypt(secret.expose()))
            }
            Err(e) => {
                failure.get_or_insert(e);
                value
            }
        },
        _ => value,
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((value, changed)),
    }
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

/// For an update: secret leaves the new config leaves out keep their stored (sealed) value, so
/// a client can change a host without sending the password again.
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

/// Applies `f` to the value of every secret key, anywhere in the tree.
fn map_secrets(config: Value, f: &mut impl FnMut(Value) -> Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = if is_secret_key(&key) {
                        f(value)
                    } else {
                        map_secrets(value, f)
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_secrets(v, f)).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncryptionKeyConfig;
    use crate::config::api::generate_key;
    use serde_json::json;

    fn encryptor(ids: &[u32]) -> Encryptor {
        let keys: Vec<_> = ids
            .iter()
            .map(|id| EncryptionKeyConfig {
                id: *id,
                key: Secret::new(generate_key()),
            })
            .collect();
        Encryptor::new(&keys).unwrap()
    }

    #[test]
    fn sealed_configs_hold_no_plain_secret_and_open_back() {
        let enc = encryptor(&[1]);
        let plain = json!({"postgres": {"host": "h", "password": "pw-123", "schema": "s"}});
        let sealed = seal(plain.clone(), &enc);
        assert!(!sealed.to_string().contains("pw-123"));
        assert_eq!(sealed["postgres"]["password"]["key_id"], json!(1));
        assert_eq!(sealed["postgres"]["host"], json!("h"));
        assert_eq!(open(sealed.clone(), &enc).unwrap(), plain);
        assert_eq!(
            redact(sealed),
            json!({"postgres": {"host": "h", "password_set": true, "schema": "s"}})
        );
    }

    #[test]
    fn omitted_secrets_are_kept_on_update() {
        let enc = encryptor(&[1]);
        let stored = seal(json!({"host": "a", "password": "old"}), &enc);
        let mut new = json!({"host": "b"});
        keep_omitted_secrets(&mut new, &stored);
        let new = seal(new, &enc);
        assert_eq!(
            open(new, &enc).unwrap(),
            json!({"host": "b", "password": "old"})
        );
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
    fn reencrypt_moves_old_values_to_the_newest_key() {
        let k1 = EncryptionKeyConfig {
            id: 1,
            key: Secret::new(generate_key()),
        };
        let k2 = EncryptionKeyConfig {
            id: 2,
            key: Secret::new(generate_key()),
        };
        let old = Encryptor::new(std::slice::from_ref(&k1)).unwrap();
        let both = Encryptor::new(&[k1, k2.clone()]).unwrap();
        let sealed = seal(json!({"password": "p", "nested": {"token": "t"}}), &old);
        let (rotated, changed) = reencrypt(sealed, &both).unwrap();
        assert_eq!(changed, 2);
        assert_eq!(rotated["nested"]["token"]["key_id"], json!(2));
        let only_new = Encryptor::new(&[k2]).unwrap();
        assert_eq!(
            open(rotated.clone(), &only_new).unwrap(),
            json!({"password": "p", "nested": {"token": "t"}})
        );
        assert_eq!(reencrypt(rotated, &both).unwrap().1, 0);
    }
}
