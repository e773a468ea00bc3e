//! Where the files of tenants' `sqlite` and `jsonl` destinations (and `iceberg` warehouses)
//! go: each tenant has its own
//! directory `{api.local.data_dir}/{tenant}/`, and a path given through the API is a relative
//! path inside it (no `..`, no absolute path, no symlink on the way out). The stored config
//! keeps the relative path; [`TenantFiles::place`] turns it into the absolute one when a
//! replicator is started, checking again, since the directory may have changed since.
//!
//! This is the API's rule only: `etl replicate` run by hand writes wherever its configuration
//! says.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::domain::tenant::validate_tenant_id;

/// The destination kinds that write files, and their path field.
const FILE_KINDS: [&str; 2] = ["sqlite", "jsonl"];

/// The root of every tenant's directory.
#[derive(Debug, Clone)]
pub struct TenantFiles {
    root: PathBuf,
}

impl TenantFiles {
    /// `root` is made absolute (relative to the working directory) so replicators started in
    /// another directory write to the same place.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: std::path::absolute(root)?,
        })
    }

    /// The tenant's directory.
    pub fn tenant_dir(&self, tenant: &str) -> Result<PathBuf, String> {
        validate_tenant_id(tenant)?;
        Ok(self.root.join(tenant))
    }

    /// Checks the file path of a destination config (if its kind has one); errors name the
    /// field (`config.sqlite.path`).
    pub fn check(&self, tenant: &str, config: &Value) -> Result<(), String> {
        if let Some((field, path)) = file_path(config) {
            self.resolve(tenant, &field, path, false)?;
        }
        if let Some(path) = warehouse_path(config) {
            self.resolve(tenant, WAREHOUSE_FIELD, path, true)?;
        }
        Ok(())
    }

    /// The config with its file path made absolute inside the tenant's directory, which is
    /// created if missing.
    pub fn place(&self, tenant: &str, mut config: Value) -> Result<Value, String> {
        if let Some(path) = warehouse_path(&config) {
            let absolute = self.resolve(tenant, WAREHOUSE_FIELD, path, true)?;
            let text = absolute
                .to_str()
                .ok_or_else(|| format!("`{WAREHOUSE_FIELD}`: the path is not UTF-8"))?;
            config["iceberg"]["warehouse"] = Value::String(format!("file://{text}"));
            return Ok(config);
        }
        let Some((field, path)) = file_path(&config) else {
            return Ok(config);
        };
        let absolute = self.resolve(tenant, &field, path, false)?;
        let dir = self.tenant_dir(tenant)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the tenant directory {}: {e}", dir.display()))?;
        let text = absolute
            .to_str()
            .ok_or_else(|| format!("`{field}`: the path is not UTF-8"))?
            .to_owned();
        for kind in FILE_KINDS {
            if let Some(settings) = config.get_mut(kind).filter(|s| s.get("path").is_some()) {
                settings["path"] = Value::String(text);
                break;
            }
        }
        Ok(config)
    }

    /// `{root}/{tenant}/{path}`, if `path` is relative, stays inside and crosses no symlink;
    /// `directory`: the path names a directory (an Iceberg warehouse), not a file.
    fn resolve(
        &self,
        tenant: &str,
        field: &str,
        path: &str,
        directory: bool,
    ) -> Result<PathBuf, String> {
        let invalid = |why: &str| {
            format!("`{field}` must be a relative path inside the tenant's data directory: {why}")
        };
        if path.is_empty() {
            return Err(invalid("it is empty"));
        }
        if path.contains('\0') {
            return Err(invalid("it contains NUL"));
        }
        let relative = Path::new(path);
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err(invalid("`..` is not allowed")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid("absolute paths are not allowed"));
                }
            }
        }
        if relative.file_name().is_none() {
            return Err(invalid("it names no file"));
        }
        let dir = self.tenant_dir(tenant)?;
        let full = dir.join(relative);
        // Every part that exists, from the tenant's directory down, must be a real directory
        // (or, last, a file): a symlink could lead anywhere.
        let mut at = dir.clone();
        let parts = std::iter::once(None).chain(relative.components().map(Some));
        for part in parts {
            if let Some(component) = part {
                at.push(component);
            }
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(invalid("it goes through a symbolic link"));
                }
                Ok(meta) if meta.is_dir() && at == full && !directory => {
                    return Err(invalid("it is a directory"));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(full)
    }
}

/// The field of an `iceberg` destination's warehouse.
const WAREHOUSE_FIELD: &str = "config.iceberg.warehouse";

/// The warehouse directory of an `iceberg` destination config, relative to the tenant's
/// directory: through the API, `file:///lake` is `{data_dir}/{tenant}/lake`. An `s3://`
/// warehouse is no file of the tenant's (its endpoint and keys are checked with the config).
fn warehouse_path(config: &Value) -> Option<&str> {
    let warehouse = config.get("iceberg")?.get("warehouse")?.as_str()?;
    if warehouse.starts_with("s3://") {
        return None;
    }
    Some(
        warehouse
            .strip_prefix("file://")
            .unwrap_or(warehouse)
            .trim_start_matches('/'),
    )
}

/// The `(field, path)` of a file destination config with a path (`jsonl` without one writes to
/// standard output).
fn file_path(config: &Value) -> Option<(String, &str)> {
    FILE_KINDS.iter().find_map(|kind| {
        let path = config.get(*kind)?.get("path")?.as_str()?;
        Some((format!("config.{kind}.path"), path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iceberg_warehouses_stay_inside_the_tenant_directory() {
        let root = tempfile::tempdir().unwrap();
        let files = TenantFiles::new(root.path()).unwrap();
        let config = |warehouse: &str| json!({"iceberg": {"warehouse": warehouse}});
        for warehouse in ["file:///../x", "file:///a/../../x", "file:///", ""] {
            let error = files.check("acme", &config(warehouse)).unwrap_err();
            assert!(
                error.contains("`config.iceberg.warehouse`"),
                "{warehouse}: {error}"
            );
        }
        let placed = files.place("acme", config("file:///lake")).unwrap();
        assert_eq!(
            placed["iceberg"]["warehouse"],
            json!(format!("file://{}/acme/lake", root.path().display()))
        );
        // A bucket is not a file of the tenant's: left as it is.
        assert_eq!(files.check("acme", &config("s3://lake/x")), Ok(()));
        let placed = files.place("acme", config("s3://lake/x")).unwrap();
        assert_eq!(placed["iceberg"]["warehouse"], json!("s3://lake/x"));
    }

    #[test]
    fn paths_must_stay_inside_the_tenant_directory() {
        let root = tempfile::tempdir().unwrap();
        let files = TenantFiles::new(root.path()).unwrap();
        for (path, description) in [
            ("../other/x.db", "parent"),
            ("a/../../x.db", "parent inside"),
            ("/etc/shadow", "absolute"),
            ("", "empty"),
            (".", "no file"),
        ] {
            let error = files
                .check("acme", &json!({"sqlite": {"path": path}}))
                .unwrap_err();
            assert!(
                error.contains("`config.sqlite.path`"),
                "{description}: {error}"
            );
        }
        assert!(
            files
                .check("../x", &json!({"jsonl": {"path": "a"}}))
                .is_err()
        );
        assert_eq!(
            files.check("acme", &json!({"jsonl": {"path": null}})),
            Ok(())
        );
        let placed = files
            .place("acme", json!({"sqlite": {"path": "shop/x.db"}}))
            .unwrap();
        assert_eq!(
            placed["sqlite"]["path"],
            json!(root.path().join("acme/shop/x.db").to_str().unwrap())
        );
    }

    #[test]
    fn a_symlink_inside_the_tenant_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("acme")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("acme/out")).unwrap();
        let files = TenantFiles::new(root.path()).unwrap();
        let error = files
            .place("acme", json!({"sqlite": {"path": "out/x.db"}}))
            .unwrap_err();
        assert!(error.contains("symbolic link"), "{error}");
    }
}
