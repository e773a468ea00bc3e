//! `deploy/`: the kustomize base and the production overlay. They must hold exactly the objects
//! `etl k8s bootstrap` applies (no drift between the two ways of setting up the data plane), and
//! the control plane's own objects must fit together: a hardened, probed Deployment reading the
//! Secret the overlay writes, listening where the Service and probes point, running as the
//! account the Role is bound to. (`tests/k8s/rbac.rs` checks the Role itself; `cli.rs` checks
//! `--dry-run` prints the base's bootstrap files byte for byte.)

use etl::config::KubernetesConfig;
use etl::k8s::bootstrap::{self, BootstrapPlan};
use etl::k8s::resources::RUN_AS_USER;
use serde_json::{Value, json};

use crate::helpers::repo;
use crate::manifests::{self, Object, base_objects, find};

/// What `etl k8s bootstrap --dry-run` prints with the repository defaults, as objects.
fn bootstrap_objects() -> Vec<Object> {
    let plan = BootstrapPlan {
        namespace: KubernetesConfig::default().namespace,
        ca_bundle: bootstrap::load_ca_bundle(&repo().join("scripts/trusted-root-certs.pem"))
            .unwrap(),
    };
    let objects = manifests::parse(
        &bootstrap::render(&plan).unwrap().combined(),
        "bootstrap --dry-run",
    );
    assert_eq!(objects.len(), 3, "namespace, service account, certificates");
    objects
}

/// Each bootstrap object is in `objects`, identical.
fn assert_holds_bootstrap_objects(objects: &[Object], origin: &str) {
    for expected in bootstrap_objects() {
        let found = find(objects, expected.kind(), expected.name());
        assert!(
            found == &expected,
            "{origin}: {} differs from what `etl k8s bootstrap` applies\n--- bootstrap ---\n{}\n--- {origin} ---\n{}",
            expected.key(),
            serde_yaml::to_string(&expected.value).unwrap(),
            serde_yaml::to_string(&found.value).unwrap()
        );
    }
}

#[test]
fn the_base_holds_exactly_the_objects_bootstrap_applies() {
    assert_holds_bootstrap_objects(&base_objects(), "deploy/base");
}

#[test]
fn kustomize_renders_the_bootstrap_objects_unchanged_in_every_kustomization() {
    let Some(kubectl) = manifests::kubectl() else {
        return;
    };
    let base = base_objects();
    let mut dirs = vec![".".to_owned(), "base".to_owned()];
    for overlay in std::fs::read_dir(manifests::deploy("overlays")).unwrap() {
        let name = overlay.unwrap().file_name().to_string_lossy().into_owned();
        dirs.push(format!("overlays/{name}"));
    }
    assert!(dirs.contains(&"overlays/production".to_owned()));
    for dir in &dirs {
        let rendered = manifests::render(&kubectl, dir);
        assert_holds_bootstrap_objects(&rendered, &format!("kubectl kustomize deploy/{dir}"));
        for object in &base {
            assert!(
                rendered.iter().any(|r| r.key() == object.key()),
                "deploy/{dir} lacks {}",
                object.key()
            );
        }
    }
    let production = manifests::render(&kubectl, "overlays/production");
    let api = find(&production, "Deployment", "etl-api");
    assert_eq!(api.value["spec"]["replicas"], json!(2));
    for container in containers(api) {
        assert_eq!(
            container["image"],
            json!("registry.example.com/etl:1.0.0"),
            "the overlay's image reaches {}",
            container["name"]
        );
    }
}

#[test]
fn every_manifest_in_the_base_is_listed_in_its_kustomization() {
    let listed = manifests::base_resources();
    let mut files: Vec<String> = std::fs::read_dir(manifests::deploy("base"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(files, sorted);
}

/// The init containers, then the containers, of a Deployment's pod template.
fn containers(deployment: &Object) -> Vec<&Value> {
    let spec = &deployment.value["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .flat_map(|key| spec[*key].as_array().into_iter().flatten())
        .collect()
}

fn api_deployment() -> Object {
    find(&base_objects(), "Deployment", "etl-api").clone()
}

#[test]
fn every_api_container_is_non_root_read_only_and_bounded() {
    let deployment = api_deployment();
    let pod = &deployment.value["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(
        pod["securityContext"]["runAsUser"],
        json!(RUN_AS_USER),
        "the Dockerfile's user"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        json!("RuntimeDefault")
    );
    let containers = containers(&deployment);
    assert_eq!(containers.len(), 2, "the migration and the API");
    for container in containers {
        let name = &container["name"];
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], json!(true), "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], json!(false), "{name}");
        assert_eq!(security["runAsNonRoot"], json!(true), "{name}");
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}");
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][bound][resource].is_string(),
                    "{name} has no {bound}.{resource}"
                );
            }
        }
        assert_eq!(
            container["envFrom"],
            json!([{"secretRef": {"name": "etl-api"}}]),
            "{name} reads the APP_ variables from the Secret"
        );
        assert_eq!(container["image"], json!("etl"), "{name}: one image");
    }
}

#[test]
fn migrations_run_in_an_init_container_before_the_api_serves() {
    let deployment = api_deployment();
    let pod = &deployment.value["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["args"], json!(["migrate", "api"]));
    assert_eq!(pod["containers"][0]["args"], json!(["serve-api"]));
}

#[test]
fn the_api_is_probed_and_served_on_the_port_prod_yaml_listens_on() {
    let prod: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("config/prod.yaml")).unwrap())
            .unwrap();
    let listen = prod["api"]["listen"]
        .as_str()
        .expect("api.listen in prod.yaml");
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();

    let deployment = api_deployment();
    let api = &deployment.value["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        api["env"],
        json!([{"name": "APP_ENVIRONMENT", "value": "prod"}]),
        "the API runs with prod.yaml"
    );
    assert_eq!(
        api["ports"],
        json!([{"name": "http", "containerPort": port, "protocol": "TCP"}])
    );
    assert_eq!(
        api["readinessProbe"]["httpGet"],
        json!({"path": "/health_check", "port": "http"})
    );
    assert_eq!(
        api["livenessProbe"]["httpGet"],
        json!({"path": "/metrics", "port": "http"}),
        "liveness does not depend on the database"
    );

    let service = find(&base_objects(), "Service", "etl-api").clone();
    assert_eq!(service.namespace(), deployment.namespace());
    assert_eq!(
        service.value["spec"]["ports"][0]["targetPort"],
        json!("http")
    );
    let labels = &deployment.value["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service.value["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "the Service selects the API pods");
    }
}

#[test]
fn the_role_is_bound_to_the_account_the_api_runs_as() {
    let objects = base_objects();
    let deployment = find(&objects, "Deployment", "etl-api");
    let account = deployment.value["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    let account_object = find(&objects, "ServiceAccount", account);
    assert_eq!(account_object.namespace(), deployment.namespace());
    assert_ne!(
        account_object.value["automountServiceAccountToken"],
        json!(false),
        "the runtime needs the token"
    );
    let binding = objects
        .iter()
        .find(|o| o.kind() == "RoleBinding")
        .expect("a RoleBinding");
    let role = objects.iter().find(|o| o.kind() == "Role").expect("a Role");
    assert_eq!(binding.namespace(), role.namespace());
    assert_eq!(
        binding.value["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.name()})
    );
    assert_eq!(
        binding.value["subjects"],
        json!([{"kind": "ServiceAccount", "name": account, "namespace": deployment.namespace()}])
    );
    assert_eq!(
        role.namespace(),
        Some(KubernetesConfig::default().namespace.as_str()),
        "the Role is in the namespace the runtime uses"
    );
}

#[test]
fn the_production_secret_store_writes_the_secret_the_api_reads() {
    let path = manifests::deploy("overlays/production/external-secret.yaml");
    let objects = manifests::parse(&std::fs::read_to_string(&path).unwrap(), "external-secret");
    let external = find(&objects, "ExternalSecret", "etl-api");
    assert_eq!(external.namespace(), api_deployment().namespace());
    assert_eq!(external.value["spec"]["target"]["name"], json!("etl-api"));
    let keys: Vec<&str> = external.value["spec"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["secretKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "APP_DATABASE__URL",
            "APP_API__API_KEYS",
            "APP_API__ENCRYPTION_KEYS"
        ]
    );
}
