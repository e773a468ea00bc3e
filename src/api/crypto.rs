//! Encryption of secrets at rest: AES-256-GCM with a random 96-bit nonce per value and the id of
//! the key stored next to the ciphertext, so several keys can be configured at once: the highest
//! id encrypts new values, any configured key decrypts (see `etl api rotate-key`).
//!
//! Every value is encrypted with *associated data* that says where it belongs (the caller's
//! choice; [`super::secrets`] binds tenant, object and field): a ciphertext only opens with the
//! same associated data, so one copied to another row or field does not open at all.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::api::decode_encryption_key;
use crate::config::{EncryptionKeyConfig, Secret};

const NONCE_BYTES: usize = 12;

/// A value as stored in the database: never the plain text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedValue {
    pub key_id: u32,
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of the ciphertext and its 16-byte tag.
    pub ciphertext: String,
}

/// Why a value cannot be encrypted or decrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("encryption key {index}: {message}")]
    BadKey { index: usize, message: String },
    #[error("no encryption key is configured")]
    NoKeys,
    #[error(
        "a stored secret was encrypted with key id {0}, which is not configured (add it back to api.encryption_keys)"
    )]
    UnknownKey(u32),
    #[error("a stored secret (key id {0}) cannot be decrypted: it is corrupt or the key changed")]
    Corrupt(u32),
}

/// The configured keys.
pub struct Encryptor {
    ciphers: BTreeMap<u32, Aes256Gcm>,
    newest: u32,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("key_ids", &self.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Encryptor {
    pub fn new(keys: &[EncryptionKeyConfig]) -> Result<Self, CryptoError> {
        let mut ciphers = BTreeMap::new();
        for (index, entry) in keys.iter().enumerate() {
            let key = decode_encryption_key(entry.key.expose())
                .map_err(|message| CryptoError::BadKey { index, message })?;
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| CryptoError::BadKey {
                index,
                message: e.to_string(),
            })?;
            ciphers.insert(entry.id, cipher);
        }
        let newest = *ciphers.keys().next_back().ok_or(CryptoError::NoKeys)?;
        Ok(Self { ciphers, newest })
    }

    /// The id of the key that encrypts new values.
    pub fn newest_key_id(&self) -> u32 {
        self.newest
    }

    /// Encrypts with the newest key and a fresh random nonce, bound to `associated`.
    pub fn encrypt(&self, plaintext: &str, associated: &[u8]) -> EncryptedValue {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::Rng::fill(&mut rand::rng(), &mut nonce);
        let cipher = &self.ciphers[&self.newest];
        // AES-GCM encryption only fails for plaintexts beyond 64 GiB.
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: associated,
                },
            )
            .unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD;
        EncryptedValue {
            key_id: self.newest,
            nonce: b64.encode(nonce),
            ciphertext: b64.encode(ciphertext),
        }
    }

    /// Decrypts with the key the value names; fails unless `associated` is what it was
    /// encrypted with.
    pub fn decrypt(
        &self,
        value: &EncryptedValue,
        associated: &[u8],
    ) -> Result<Secret, CryptoError> {
        let cipher = self
            .ciphers
            .get(&value.key_id)
            .ok_or(CryptoError::UnknownKey(value.key_id))?;
        let corrupt = || CryptoError::Corrupt(value.key_id);
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = b64.decode(&value.nonce).map_err(|_| corrupt())?;
        let nonce = <[u8; NONCE_BYTES]>::try_from(nonce.as_slice()).map_err(|_| corrupt())?;
        let ciphertext = b64.decode(&value.ciphertext).map_err(|_| corrupt())?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext.as_slice(),
                    aad: associated,
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::api::generate_key;

    fn key(id: u32) -> EncryptionKeyConfig {
        EncryptionKeyConfig {
            id,
            key: Secret::new(generate_key()),
        }
    }

    #[test]
    fn the_highest_key_id_encrypts_and_every_key_decrypts() {
        let (old, new) = (key(1), key(2));
        let before = Encryptor::new(std::slice::from_ref(&old)).unwrap();
        let sealed_old = before.encrypt("hunter2", b"here");
        assert_eq!(sealed_old.key_id, 1);
        let both = Encryptor::new(&[new.clone(), old]).unwrap();
        let sealed_new = both.encrypt("hunter2", b"here");
        assert_eq!(sealed_new.key_id, 2);
        assert_eq!(
            both.decrypt(&sealed_old, b"here").unwrap().expose(),
            "hunter2"
        );
        assert_eq!(
            both.decrypt(&sealed_new, b"here").unwrap().expose(),
            "hunter2"
        );
        let only_new = Encryptor::new(&[new]).unwrap();
        assert_eq!(
            only_new.decrypt(&sealed_old, b"here").unwrap_err(),
            CryptoError::UnknownKey(1)
        );
    }

    #[test]
    fn nonces_differ_and_tampering_is_detected() {
        let encryptor = Encryptor::new(&[key(7)]).unwrap();
        let a = encryptor.encrypt("same", b"");
        let b = encryptor.encrypt("same", b"");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.contains("same"));
        let mut tampered = a.clone();
        tampered.ciphertext = b.ciphertext;
        assert_eq!(
            encryptor.decrypt(&tampered, b"").unwrap_err(),
            CryptoError::Corrupt(7)
        );
    }

    #[test]
    fn a_value_opens_only_with_the_associated_data_it_was_sealed_with() {
        let encryptor = Encryptor::new(&[key(1)]).unwrap();
        let sealed = encryptor.encrypt("pw", b"tenant a");
        assert_eq!(
            encryptor.decrypt(&sealed, b"tenant b").unwrap_err(),
            CryptoError::Corrupt(1)
        );
        assert!(encryptor.decrypt(&sealed, b"").is_err());
        assert_eq!(
            encryptor.decrypt(&sealed, b"tenant a").unwrap().expose(),
            "pw"
        );
    }
}
