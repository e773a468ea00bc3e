//! Names and labels of a replicator's Kubernetes objects, derived from its tenant id and
//! replicator id and validated once, here, so the rest of `k8s` can use them as they are.
//!
//! The StatefulSet is `replicator-{tenant}-{replicator}`; its Secret and ConfigMap add `-secrets`
//! and `-config`, and its only pod is `…-0`. The StatefulSet name is kept to 52 characters
//! because Kubernetes derives the pod label `controller-revision-hash` from it (name + `-` + a
//! 10-character hash, at most 63 characters).

use std::collections::BTreeMap;

use super::K8sError;
use crate::config::sections::is_dns1123_label;

/// Longest StatefulSet name whose `controller-revision-hash` label still fits in 63 characters.
pub const MAX_STATEFUL_SET_NAME: usize = 52;
/// Longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// Label key holding the tenant id.
pub const TENANT_LABEL: &str = "etl/tenant-id";
/// Label key holding the replicator id.
pub const REPLICATOR_LABEL: &str = "etl/replicator-id";
/// Label key holding the pipeline id.
pub const PIPELINE_LABEL: &str = "etl/pipeline-id";
/// `app.kubernetes.io/name` of every replicator object.
pub const APP_NAME: &str = "etl-replicator";

/// The validated names of one replicator's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorNames {
    tenant_id: String,
    replicator_id: i64,
    stateful_set: String,
}

impl ReplicatorNames {
    /// Derives the names; fails with [`K8sError::InvalidName`] naming the input at fault.
    pub fn new(tenant_id: &str, replicator_id: i64) -> Result<Self, K8sError> {
        if !is_dns1123_label(tenant_id) {
            return Err(K8sError::InvalidName {
                input: "tenant id",
                value: tenant_id.to_owned(),
                reason: "must be 1 to 63 lowercase letters, digits or `-`, starting and ending \
                         with a letter or digit (DNS-1123 label)"
                    .into(),
            });
        }
        if replicator_id < 0 {
            return Err(K8sError::InvalidName {
                input: "replicator id",
                value: replicator_id.to_string(),
                reason: "must not be negative".into(),
            });
        }
        let stateful_set = format!("replicator-{tenant_id}-{replicator_id}");
        if stateful_set.len() > MAX_STATEFUL_SET_NAME {
            return Err(K8sError::InvalidName {
                input: "tenant id",
                value: tenant_id.to_owned(),
                reason: format!(
                    "the StatefulSet name `{stateful_set}` would be {} characters, more than the \
                     {MAX_STATEFUL_SET_NAME} Kubernetes allows here; use a shorter tenant id",
                    stateful_set.len()
                ),
            });
        }
        Ok(Self {
            tenant_id: tenant_id.to_owned(),
            replicator_id,
            stateful_set,
        })
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn replicator_id(&self) -> i64 {
        self.replicator_id
    }

    /// The StatefulSet (and the prefix of every other name).
    pub fn stateful_set(&self) -> &str {
        &self.stateful_set
    }

    /// The Secret holding the replicator's `APP_…` secret variables.
    pub fn secret(&self) -> String {
        format!("{}-secrets", self.stateful_set)
    }

    /// The ConfigMap holding the replicator's `{env}.yaml`.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.stateful_set)
    }

    /// The StatefulSet's only pod.
    pub fn pod(&self) -> String {
        format!("{}-0", self.stateful_set)
    }

    /// Labels that select this replicator's pods (the StatefulSet selector; never changes).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
            (TENANT_LABEL.to_owned(), self.tenant_id.clone()),
            (REPLICATOR_LABEL.to_owned(), self.replicator_id.to_string()),
        ])
    }

    /// Labels of every object of this replicator: the selector labels, the pipeline id and
    /// `app.kubernetes.io/managed-by`.
    pub fn labels(&self, pipeline_id: i64) -> Result<BTreeMap<String, String>, K8sError> {
        let pipeline = pipeline_id.to_string();
        validate_label_value("pipeline id", &pipeline)?;
        let mut labels = self.selector_labels();
        labels.insert(PIPELINE_LABEL.to_owned(), pipeline);
        labels.insert("app.kubernetes.io/managed-by".to_owned(), "etl".to_owned());
        Ok(labels)
    }
}

/// Checks `value` is a valid label value: at most 63 characters, alphanumerics, `-`, `_` or `.`,
/// starting and ending alphanumeric (or empty).
pub fn validate_label_value(input: &'static str, value: &str) -> Result<(), K8sError> {
    let bytes = value.as_bytes();
    let valid = bytes.is_empty()
        || (bytes.len() <= MAX_LABEL_VALUE
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(K8sError::InvalidName {
            input,
            value: value.to_owned(),
            reason: format!(
                "is not a valid label value (at most {MAX_LABEL_VALUE} letters, digits, `-`, `_` \
                 or `.`, starting and ending with a letter or digit)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_tenant_and_replicator() {
        let names = ReplicatorNames::new("acme-co", 42).unwrap();
        assert_eq!(names.stateful_set(), "replicator-acme-co-42");
        assert_eq!(names.secret(), "replicator-acme-co-42-secrets");
        assert_eq!(names.config_map(), "replicator-acme-co-42-config");
        assert_eq!(names.pod(), "replicator-acme-co-42-0");
        let labels = names.labels(7).unwrap();
        assert_eq!(labels[TENANT_LABEL], "acme-co");
        assert_eq!(labels[REPLICATOR_LABEL], "42");
        assert_eq!(labels[PIPELINE_LABEL], "7");
    }

    #[test]
    fn tenant_ids_that_are_not_dns_labels_are_rejected() {
        for (tenant, why) in [
            ("", "empty"),
            ("Acme", "uppercase"),
            ("acme_co", "underscore"),
            ("-acme", "leading dash"),
            ("acme-", "trailing dash"),
            ("ac.me", "dot"),
            ("acmé", "non-ascii"),
        ] {
            let err = ReplicatorNames::new(tenant, 1).unwrap_err();
            assert!(
                err.to_string().contains("tenant id"),
                "{why}: {tenant:?} gave {err}"
            );
        }
    }

    #[test]
    fn names_longer_than_the_stateful_set_limit_are_rejected() {
        // "replicator-" (11) + tenant + "-" + "1" = 52 with a 39-character tenant id.
        let fits = "a".repeat(39);
        assert_eq!(
            ReplicatorNames::new(&fits, 1).unwrap().stateful_set().len(),
            MAX_STATEFUL_SET_NAME
        );
        let too_long = "a".repeat(40);
        let err = ReplicatorNames::new(&too_long, 1).unwrap_err();
        assert!(err.to_string().contains("53 characters"), "{err}");
        assert!(ReplicatorNames::new("acme", -1).is_err());
    }

    #[test]
    fn label_values_follow_kubernetes_rules() {
        assert!(validate_label_value("x", "").is_ok());
        assert!(validate_label_value("x", "a.b_c-d").is_ok());
        assert!(validate_label_value("x", &"a".repeat(63)).is_ok());
        assert!(validate_label_value("x", &"a".repeat(64)).is_err());
        assert!(validate_label_value("x", "-12").is_err());
        assert!(validate_label_value("x", "a/b").is_err());
    }
}
