//! The Kubernetes deployment in `k8s/` is valid and agrees with `topology.yaml`.
//!
//! Every kustomization (the base and each overlay) is built with `kustomize`, and its output:
//! - passes `kubernetes-validate --strict` against the Kubernetes API schemas that package
//!   bundles (offline);
//! - has its custom resources (Strimzi, KEDA, prometheus-operator) match the OpenAPI schemas of
//!   their CustomResourceDefinitions, unknown fields rejected as the API server's strict field
//!   validation does;
//! - agrees with `topology.yaml` as each pod loads it, with the project's own loader and the
//!   environment the pod gets: a KafkaTopic per topic with the same partitions, replicas and
//!   configs; a StatefulSet per operator with the right arguments, port and probes; KEDA
//!   scaling on the lag of the operator's group on each of its inputs; and, where Kafka
//!   authenticates, a KafkaUser per operator whose ACLs are exactly what the operator reads and
//!   writes.
//!
//! Mutated copies of a build show that each check catches what it should.
//!
//! The tools (kustomize, kubernetes-validate, the CRDs) are installed by `.ci/k8s-tools` into
//! `.surgeflow/cache/k8s-tools`, or found under `SURGEFLOW_K8S_TOOLS`. `SURGEFLOW_K8S_DIR`
//! points the tests at another copy of `k8s/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Value, json};
use surgeflow_kafka::admin::declared_configs;
use surgeflow_testkit::project_root;
use surgeflow_topology::{
    Delivery, MATCHER, OperatorCommon, SURGE_PRICER, SaslMechanism, SecurityProtocol, Topology,
};

/// The script that installs the tools these tests need.
const TOOLS_SCRIPT: &str = ".ci/k8s-tools";
/// The Kubernetes version whose API schemas the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.31.0";
/// Every kustomization that can be built, relative to `k8s/`.
const BUILDS: [&str; 3] = ["base", "overlays/dev", "overlays/production"];
/// The build that must run with authentication and least-privilege ACLs.
const PRODUCTION: &str = "overlays/production";
/// The image holding every binary; its tag is the workspace version.
const IMAGE: &str = "ghcr.io/surgeflow/surgeflow";
/// Where the pods find the topology.
const TOPOLOGY_PATH: &str = "/etc/surgeflow/topology.yaml";
/// Where the image puts the Avro schemas the topology references (see the Dockerfile).
const SCHEMAS_PATH: &str = "/etc/surgeflow/schemas";
/// The label the StatefulSet controller sets to a pod's ordinal (Kubernetes 1.28+).
const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";
/// The user the image and the pods run as.
const RUN_AS_USER: i64 = 10001;
/// Secrets created by hand, which `docs/operations.md` must tell how to create. Strimzi writes
/// the others (KafkaUser credentials and the cluster CA).
const HAND_MADE_SECRETS: [&str; 1] = ["surgeflow-registry"];

/// Operators that read their own outputs back when they restore state
/// (`operators/surge-pricer/src/published.rs`, `operators/matcher/src/published.rs`).
const READS_BACK_OUTPUTS: [&str; 2] = [SURGE_PRICER, MATCHER];
/// Operators with state, restored by replaying their inputs through a consumer of group
/// `<group>.restore` (`crates/runtime/src/replay.rs`).
const STATEFUL: [&str; 2] = [SURGE_PRICER, MATCHER];
/// Stands for the process id in the group ids of per-process readers.
const PID: &str = "4242";

/// Longest a restore keeps the processing loop from turning, seconds: the runtime's
/// `RESTORE_TIMEOUT` (600 s) plus an operator's read-back of its outputs (120 s). The liveness
/// probe must not kill a pod for that.
const RESTORE_STALL_S: i64 = 720;
/// Longest an operator may take to open its HTTP port, seconds: the matcher reads its tables
/// first (`LOAD_TIMEOUT`, 300 s).
const STARTUP_S: i64 = 300;
/// Shortest graceful termination: a transaction may take its 30 s timeout to commit, then the
/// instance leaves the group (up to 5 s).
const MIN_GRACE_S: i64 = 45;

// ------------------------------------------------------------------------------------------
// Tools, builds and CRDs
// ------------------------------------------------------------------------------------------

struct Tools {
    kustomize: PathBuf,
    kubernetes_validate: PathBuf,
    crds: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let dir = std::env::var_os("SURGEFLOW_K8S_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| project_root().join(".surgeflow/cache/k8s-tools"));
        let missing = |what: &str| -> ! {
            panic!(
                "{what} not found: run {TOOLS_SCRIPT} first, which installs kustomize, \
                 kubernetes-validate and the CRDs into {} (or point SURGEFLOW_K8S_TOOLS at \
                 such a directory)",
                dir.display()
            )
        };
        let kustomize = std::iter::once(dir.join("bin/kustomize"))
            .chain(on_path("kustomize"))
            .chain(go_bin("kustomize"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| missing("kustomize"));
        let kubernetes_validate = std::iter::once(dir.join("venv/bin/kubernetes-validate"))
            .chain(on_path("kubernetes-validate"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| missing("kubernetes-validate"));
        let crds = dir.join("crds");
        if !crds.is_dir() {
            missing(&format!("the CRD directory {}", crds.display()));
        }
        Tools {
            kustomize,
            kubernetes_validate,
            crds,
        }
    })
}

/// The manifests: `k8s/` of this repository, or `SURGEFLOW_K8S_DIR` (a copy being worked on).
fn k8s_dir() -> PathBuf {
    std::env::var_os("SURGEFLOW_K8S_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("k8s"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn go_bin(name: &str) -> Option<PathBuf> {
    let out = Command::new("go").args(["env", "GOPATH"]).output().ok()?;
    let gopath = String::from_utf8(out.stdout).ok()?;
    let first = std::env::split_paths(gopath.trim()).next()?;
    Some(first.join("bin").join(name))
}

/// One kustomization, built.
#[derive(Clone)]
struct Build {
    name: &'static str,
    yaml: String,
    docs: Vec<Value>,
}

fn builds() -> &'static [Build] {
    static BUILT: OnceLock<Vec<Build>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let k8s = k8s_dir();
        BUILDS
            .iter()
            .map(|&name| {
                let out = Command::new(&tools().kustomize)
                    .arg("build")
                    .arg(k8s.join(name))
                    .output()
                    .expect("running kustomize");
                assert!(
                    out.status.success(),
                    "kustomize build {}/{name} failed:\n{}",
                    k8s.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let yaml = String::from_utf8(out.stdout).expect("kustomize output is UTF-8");
                let docs = parse_documents(&yaml)
                    .unwrap_or_else(|e| panic!("kustomize build k8s/{name}: {e}"));
                Build { name, yaml, docs }
            })
            .collect()
    })
}

fn build(name: &str) -> &'static Build {
    builds()
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no build {name}"))
}

fn parse_documents(yaml: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(document).map_err(|e| e.to_string())?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// A directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(surgeflow_testkit::unique_name(&format!(
            "surgeflow-k8s-{what}"
        )));
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The served versions of every CRD in the tools' directory, as JSON Schemas.
struct Crds {
    /// (group, version, kind) -> (JSON Schema, deprecated).
    versions: BTreeMap<(String, String, String), (Value, bool)>,
}

fn crds() -> &'static Crds {
    static CRDS: OnceLock<Crds> = OnceLock::new();
    CRDS.get_or_init(|| {
        let mut versions = BTreeMap::new();
        let dir = &tools().crds;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("listing CRDs").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("reading a CRD");
            let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for crd in docs
                .iter()
                .filter(|d| kind(d) == "CustomResourceDefinition")
            {
                let group = text_at(crd, "/spec/group").to_string();
                let crd_kind = text_at(crd, "/spec/names/kind").to_string();
                for version in array_at(crd, "/spec/versions") {
                    if version.get("served") != Some(&json!(true)) {
                        continue;
                    }
                    let schema = version
                        .pointer("/schema/openAPIV3Schema")
                        .unwrap_or_else(|| panic!("{}: a version without schema", file.display()));
                    versions.insert(
                        (
                            group.clone(),
                            text_at(version, "/name").to_string(),
                            crd_kind.clone(),
                        ),
                        (
                            structural_to_json_schema(schema, true),
                            version.get("deprecated") == Some(&json!(true)),
                        ),
                    );
                }
            }
        }
        assert!(
            !versions.is_empty(),
            "no CRD in {}: run {TOOLS_SCRIPT}",
            dir.display()
        );
        Crds { versions }
    })
}

/// A CRD's structural OpenAPI v3 schema as a JSON Schema (draft 4) that checks what the API
/// server checks: `nullable` admits null, `x-kubernetes-int-or-string` an integer or a string,
/// an embedded resource its `apiVersion`, `kind` and `metadata`; and an object with declared
/// properties rejects any other field unless `x-kubernetes-preserve-unknown-fields` keeps them
/// (the API server prunes them, or refuses them under strict field validation). The root's
/// `metadata` is the standard ObjectMeta.
fn structural_to_json_schema(schema: &Value, root: bool) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let flag = |key: &str| map.get(key) == Some(&json!(true));
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), structural_to_json_schema(s, false)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" => structural_to_json_schema(value, false),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| structural_to_json_schema(s, false))
                    .collect(),
            ),
            "nullable" | "description" | "default" | "example" | "externalDocs" => continue,
            k if k.starts_with("x-kubernetes-") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if flag("x-kubernetes-int-or-string") {
        out.remove("type");
        if !out.contains_key("anyOf") {
            out.insert(
                "anyOf".into(),
                json!([{ "type": "integer" }, { "type": "string" }]),
            );
        }
    }
    if flag("x-kubernetes-embedded-resource") {
        let properties = out
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties is an object");
        properties
            .entry("apiVersion")
            .or_insert(json!({ "type": "string" }));
        properties
            .entry("kind")
            .or_insert(json!({ "type": "string" }));
        properties
            .entry("metadata")
            .or_insert(json!({ "type": "object" }));
    }
    if flag("nullable") {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    if out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), json!(false));
    }
    if root {
        // ObjectMeta: the fields a manifest may set.
        if let Some(Value::Object(properties)) = out.get_mut("properties") {
            properties.insert(
                "metadata".into(),
                json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "namespace": { "type": "string" },
                        "labels": {
                            "type": "object",
                            "additionalProperties": { "type": "string" }
                        },
                        "annotations": {
                            "type": "object",
                            "additionalProperties": { "type": "string" }
                        }
                    },
                    "required": ["name"],
                    "additionalProperties": false
                }),
            );
        }
    }
    Value::Object(out)
}

// ------------------------------------------------------------------------------------------
// Reading manifests
// ------------------------------------------------------------------------------------------

fn kind(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn name(doc: &Value) -> &str {
    doc.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn api_version(doc: &Value) -> &str {
    doc.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

fn text_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(doc: &Value, pointer: &str) -> Option<i64> {
    doc.pointer(pointer).and_then(Value::as_i64)
}

fn array_at<'a>(doc: &'a Value, pointer: &str) -> &'a [Value] {
    doc.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn of_kind<'a>(docs: &'a [Value], wanted: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| kind(d) == wanted)
}

fn find<'a>(docs: &'a [Value], wanted: &str, wanted_name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| kind(d) == wanted && name(d) == wanted_name)
}

fn id(doc: &Value) -> String {
    format!("{}/{}", kind(doc), name(doc))
}

/// Whether `doc` is a custom resource: its API group is neither core nor a Kubernetes one.
fn is_custom(doc: &Value) -> bool {
    match api_version(doc).split_once('/') {
        Some((group, _)) => group.contains('.') && !group.ends_with(".k8s.io"),
        None => false,
    }
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `selector`'s `matchLabels` all hold in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(wanted) = selector.get("matchLabels").and_then(Value::as_object) else {
        return false;
    };
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum EnvValue {
    Literal(String),
    Secret { name: String, key: String },
    Field(String),
}

/// The environment of `container`, as the kubelet builds it: `envFrom` ConfigMaps first, then
/// `env` in order, `$(VAR)` expanded from what came before.
fn container_env(docs: &[Value], container: &Value) -> Result<BTreeMap<String, EnvValue>, String> {
    let mut env = BTreeMap::new();
    for source in array_at(container, "/envFrom") {
        if let Some(map) = source.get("configMapRef") {
            let cm_name = text_at(map, "/name");
            let cm = find(docs, "ConfigMap", cm_name)
                .ok_or_else(|| format!("envFrom names ConfigMap {cm_name}, not in the build"))?;
            for (k, v) in cm
                .get("data")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                env.insert(
                    k.clone(),
                    EnvValue::Literal(v.as_str().unwrap_or_default().to_string()),
                );
            }
        } else {
            return Err(format!("unexpected envFrom source {source}"));
        }
    }
    for var in array_at(container, "/env") {
        let var_name = text_at(var, "/name").to_string();
        let value = if let Some(value) = var.get("value") {
            EnvValue::Literal(expand(value.as_str().unwrap_or_default(), &env))
        } else if let Some(r) = var.pointer("/valueFrom/configMapKeyRef") {
            let (cm_name, key) = (text_at(r, "/name"), text_at(r, "/key"));
            let cm = find(docs, "ConfigMap", cm_name)
                .ok_or_else(|| format!("{var_name} names ConfigMap {cm_name}, not in the build"))?;
            EnvValue::Literal(text_at(cm, &format!("/data/{key}")).to_string())
        } else if let Some(r) = var.pointer("/valueFrom/secretKeyRef") {
            EnvValue::Secret {
                name: text_at(r, "/name").to_string(),
                key: text_at(r, "/key").to_string(),
            }
        } else if let Some(path) = var.pointer("/valueFrom/fieldRef/fieldPath") {
            EnvValue::Field(path.as_str().unwrap_or_default().to_string())
        } else {
            return Err(format!("{var_name}: unexpected value source {var}"));
        };
        env.insert(var_name, value);
    }
    Ok(env)
}

fn expand(value: &str, env: &BTreeMap<String, EnvValue>) -> String {
    let mut out = value.to_string();
    for (k, v) in env {
        if let EnvValue::Literal(v) = v {
            out = out.replace(&format!("$({k})"), v);
        }
    }
    out
}

/// A volume mounted in the container at `mount_path`, with its definition.
fn volume_at<'a>(
    sts: &'a Value,
    container: &'a Value,
    mount_path: &str,
) -> Option<(&'a Value, &'a Value)> {
    let mount = array_at(container, "/volumeMounts")
        .iter()
        .find(|m| text_at(m, "/mountPath") == mount_path)?;
    let volume = array_at(sts, "/spec/template/spec/volumes")
        .iter()
        .find(|v| v.get("name") == mount.get("name"))?;
    Some((mount, volume))
}

/// Every Secret a pod template reads: (name, keys).
fn pod_secrets(sts: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let items = |v: &Value| -> Vec<String> {
        array_at(v, "/items")
            .iter()
            .map(|i| text_at(i, "/key").to_string())
            .collect()
    };
    for volume in array_at(sts, "/spec/template/spec/volumes") {
        if let Some(secret) = volume.get("secret") {
            out.push((text_at(secret, "/secretName").to_string(), items(secret)));
        }
        for source in array_at(volume, "/projected/sources") {
            if let Some(secret) = source.get("secret") {
                out.push((text_at(secret, "/name").to_string(), items(secret)));
            }
        }
    }
    for container in array_at(sts, "/spec/template/spec/containers") {
        for var in array_at(container, "/env") {
            if let Some(r) = var.pointer("/valueFrom/secretKeyRef") {
                out.push((
                    text_at(r, "/name").to_string(),
                    vec![text_at(r, "/key").to_string()],
                ));
            }
        }
        for source in array_at(container, "/envFrom") {
            if let Some(r) = source.get("secretRef") {
                out.push((text_at(r, "/name").to_string(), Vec::new()));
            }
        }
    }
    out
}

/// A KEDA TriggerAuthentication's parameters.
fn trigger_auth_params(docs: &[Value], auth: &Value) -> BTreeMap<String, EnvValue> {
    let mut params = BTreeMap::new();
    for r in array_at(auth, "/spec/configMapTargetRef") {
        let cm = find(docs, "ConfigMap", text_at(r, "/name"));
        let value = cm.map_or("", |cm| {
            text_at(cm, &format!("/data/{}", text_at(r, "/key")))
        });
        params.insert(
            text_at(r, "/parameter").to_string(),
            EnvValue::Literal(value.to_string()),
        );
    }
    for r in array_at(auth, "/spec/secretTargetRef") {
        params.insert(
            text_at(r, "/parameter").to_string(),
            EnvValue::Secret {
                name: text_at(r, "/name").to_string(),
                key: text_at(r, "/key").to_string(),
            },
        );
    }
    params
}

// ------------------------------------------------------------------------------------------
// Pods: each operator's StatefulSet with the topology it loads
// ------------------------------------------------------------------------------------------

struct Pod<'a> {
    sts: &'a Value,
    container: &'a Value,
    env: BTreeMap<String, EnvValue>,
    topology: Topology,
}

impl Pod<'_> {
    fn operator(&self) -> OperatorCommon<'_> {
        self.topology
            .operators
            .get(name(self.sts))
            .expect("pods are made only for declared operators")
    }
}

/// Loads the topology each operator's pod would load: the file mounted at `--topology`, with the
/// pod's environment, mounted Secrets replaced by placeholder files under `scratch` and the
/// schemas (which the image ships) taken from the repository.
fn pods<'a>(docs: &'a [Value], scratch: &Path, problems: &mut Vec<String>) -> Vec<Pod<'a>> {
    let root = project_root();
    let mut pods = Vec::new();
    for sts in of_kind(docs, "StatefulSet") {
        let what = id(sts);
        let containers = array_at(sts, "/spec/template/spec/containers");
        let [container] = containers else {
            problems.push(format!(
                "{what}: one container expected, found {}",
                containers.len()
            ));
            continue;
        };
        let env = match container_env(docs, container) {
            Ok(env) => env,
            Err(e) => {
                problems.push(format!("{what}: {e}"));
                continue;
            }
        };
        let Some(text) = mounted_topology(docs, sts, container) else {
            problems.push(format!(
                "{what}: no ConfigMap with the topology mounted at {TOPOLOGY_PATH}"
            ));
            continue;
        };
        // Secrets become placeholder files at the same place under `scratch`.
        let local = scratch.join(name(sts));
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for mount in array_at(container, "/volumeMounts") {
            let path = text_at(mount, "/mountPath");
            let Some((_, volume)) = volume_at(sts, container, path) else {
                problems.push(format!("{what}: {path} mounts an undeclared volume"));
                continue;
            };
            if let Some(secret) = volume.get("secret") {
                let dir = local.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(&dir).expect("creating a secret placeholder");
                for item in array_at(secret, "/items") {
                    std::fs::write(dir.join(text_at(item, "/path")), "placeholder\n")
                        .expect("writing a secret placeholder");
                }
                mounts.push((format!("{path}/"), dir));
            }
        }
        let vars: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    EnvValue::Literal(s) => mounts
                        .iter()
                        .find_map(|(prefix, dir)| {
                            s.strip_prefix(prefix.as_str())
                                .map(|rest| dir.join(rest).display().to_string())
                        })
                        .unwrap_or_else(|| s.clone()),
                    EnvValue::Secret { name, key } => format!("secret-{name}-{key}"),
                    EnvValue::Field(path) if path == POD_INDEX_FIELD => "0".to_string(),
                    EnvValue::Field(path) => format!("field-{path}"),
                };
                (k.clone(), value)
            })
            .collect();
        match Topology::from_yaml_str(&text, &root, &vars) {
            Ok(topology) => {
                if topology.operators.get(name(sts)).is_none() {
                    problems.push(format!(
                        "{what}: no operator {} in topology.yaml",
                        name(sts)
                    ));
                    continue;
                }
                pods.push(Pod {
                    sts,
                    container,
                    env,
                    topology,
                })
            }
            Err(e) => problems.push(format!(
                "{what}: the topology does not load with the pod's environment:\n{e}"
            )),
        }
    }
    pods
}

/// The text of the topology mounted at `TOPOLOGY_PATH` from a ConfigMap of the build.
fn mounted_topology(docs: &[Value], sts: &Value, container: &Value) -> Option<String> {
    let (mount, volume) = volume_at(sts, container, TOPOLOGY_PATH)?;
    let cm = find(docs, "ConfigMap", text_at(volume, "/configMap/name"))?;
    let key = text_at(mount, "/subPath");
    cm.pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

// ------------------------------------------------------------------------------------------
// Agreement with the topology
// ------------------------------------------------------------------------------------------

/// Every way the build disagrees with topology.yaml; empty when it agrees.
fn disagreements(docs: &[Value]) -> Vec<String> {
    let scratch = Scratch::new("pods");
    let mut problems = Vec::new();
    let pods = pods(docs, &scratch.0, &mut problems);
    let reference = reference_topology();
    let declared: BTreeSet<&str> = reference.operators.iter().map(|op| op.name).collect();
    let deployed: BTreeSet<&str> = of_kind(docs, "StatefulSet").map(name).collect();
    if declared != deployed {
        problems.push(format!(
            "operators declared {declared:?}, StatefulSets deployed {deployed:?}"
        ));
    }
    for kind in ["Deployment", "DaemonSet", "ReplicaSet", "Job", "CronJob"] {
        for doc in of_kind(docs, kind) {
            problems.push(format!("{}: operators run as StatefulSets only", id(doc)));
        }
    }
    for pod in &pods {
        problems.extend(workload_problems(docs, pod));
        problems.extend(keda_problems(docs, pod));
        problems.extend(topic_problems(docs, &pod.topology));
    }
    problems.extend(user_problems(docs, &pods));
    problems.extend(monitoring_problems(docs));
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

/// topology.yaml as the repository has it, with no environment.
fn reference_topology() -> Topology {
    let root = project_root();
    let text = std::fs::read_to_string(root.join("topology.yaml")).expect("reading topology.yaml");
    Topology::from_yaml_str(&text, &root, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("topology.yaml: {e}"))
}

fn topic_problems(docs: &[Value], topology: &Topology) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_topic: BTreeMap<&str, &Value> = BTreeMap::new();
    for kt in of_kind(docs, "KafkaTopic") {
        let topic = kt
            .pointer("/spec/topicName")
            .and_then(Value::as_str)
            .unwrap_or_else(|| name(kt));
        if by_topic.insert(topic, kt).is_some() {
            problems.push(format!("topic {topic}: more than one KafkaTopic"));
        }
        if !is_dns_subdomain(name(kt)) {
            problems.push(format!("{}: not a valid Kubernetes name", id(kt)));
        }
        if text_at(kt, "/metadata/labels/strimzi.io~1cluster").is_empty() {
            problems.push(format!("{}: no strimzi.io/cluster label", id(kt)));
        }
    }
    for (topic, spec) in &topology.topics {
        let Some(kt) = by_topic.remove(topic.as_str()) else {
            problems.push(format!("topic {topic}: no KafkaTopic"));
            continue;
        };
        let what = format!("topic {topic} ({})", id(kt));
        if int_at(kt, "/spec/partitions") != Some(i64::from(spec.partitions)) {
            problems.push(format!(
                "{what}: partitions {} in the KafkaTopic, {} in the topology",
                kt.pointer("/spec/partitions").unwrap_or(&Value::Null),
                spec.partitions
            ));
        }
        if int_at(kt, "/spec/replicas") != Some(i64::from(spec.replication)) {
            problems.push(format!(
                "{what}: replicas {} in the KafkaTopic, replication {} in the topology",
                kt.pointer("/spec/replicas").unwrap_or(&Value::Null),
                spec.replication
            ));
        }
        let config: BTreeMap<String, String> = kt
            .pointer("/spec/config")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        let wanted = declared_configs(spec);
        if config != wanted {
            problems.push(format!(
                "{what}: config {config:?} in the KafkaTopic, {wanted:?} from the topology"
            ));
        }
    }
    for (topic, kt) in by_topic {
        problems.push(format!(
            "topic {topic} ({}): a KafkaTopic for a topic the topology does not declare",
            id(kt)
        ));
    }
    problems
}

fn workload_problems(docs: &[Value], pod: &Pod<'_>) -> Vec<String> {
    let op = pod.operator();
    let (sts, c) = (pod.sts, pod.container);
    let what = id(sts);
    let mut problems = Vec::new();
    let mut check = |ok: bool, message: String| {
        if !ok {
            problems.push(format!("{what}: {message}"));
        }
    };
    let image = format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION"));
    check(
        text_at(c, "/image") == image,
        format!("image {} instead of {image}", text_at(c, "/image")),
    );
    check(
        c.get("command") == Some(&json!([op.name])),
        format!("command {:?} instead of [{}]", c.get("command"), op.name),
    );
    let args = json!(["--topology", TOPOLOGY_PATH, "--instance-id", "$(POD_INDEX)"]);
    check(
        c.get("args") == Some(&args),
        format!("args {:?} instead of {args}", c.get("args")),
    );
    check(
        pod.env.get("POD_INDEX") == Some(&EnvValue::Field(POD_INDEX_FIELD.into())),
        format!("POD_INDEX must come from {POD_INDEX_FIELD} (the pod's ordinal)"),
    );
    check(
        pod.env.get("SURGEFLOW_HTTP_HOST") == Some(&EnvValue::Literal("0.0.0.0".into())),
        "SURGEFLOW_HTTP_HOST must be 0.0.0.0 (the default is loopback)".into(),
    );
    check(
        !pod.env.contains_key("SURGEFLOW_HTTP_PORT"),
        "SURGEFLOW_HTTP_PORT overrides the topology's http_port".into(),
    );
    check(
        !pod.env.contains_key("SURGEFLOW_INSTANCE_ID"),
        "SURGEFLOW_INSTANCE_ID competes with --instance-id".into(),
    );
    let http = array_at(c, "/ports")
        .iter()
        .find(|p| text_at(p, "/name") == "http");
    check(
        http.and_then(|p| int_at(p, "/containerPort")) == Some(i64::from(op.http_port)),
        format!(
            "container port `http` {} instead of the topology's http_port {}",
            http.and_then(|p| p.get("containerPort"))
                .map_or("missing".to_string(), Value::to_string),
            op.http_port
        ),
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = c.pointer(&format!("/{probe}/httpGet"));
        let port = get.and_then(|g| g.get("port"));
        let port_ok = port == Some(&json!("http")) || port == Some(&json!(op.http_port));
        check(
            get.is_some_and(|g| text_at(g, "/path") == path) && port_ok,
            format!("{probe} must GET {path} on port {} (http)", op.http_port),
        );
    }
    let patience = |probe: &str| {
        int_at(c, &format!("/{probe}/periodSeconds")).unwrap_or(10)
            * int_at(c, &format!("/{probe}/failureThreshold")).unwrap_or(3)
    };
    check(
        patience("livenessProbe") >= RESTORE_STALL_S,
        format!(
            "the liveness probe gives up after {} s, within a restore (up to {RESTORE_STALL_S} s)",
            patience("livenessProbe")
        ),
    );
    check(
        patience("startupProbe") >= STARTUP_S,
        format!(
            "the startup probe gives up after {} s; starting may take {STARTUP_S} s",
            patience("startupProbe")
        ),
    );
    let grace = int_at(sts, "/spec/template/spec/terminationGracePeriodSeconds").unwrap_or(30);
    check(
        grace >= MIN_GRACE_S,
        format!("terminationGracePeriodSeconds {grace} < {MIN_GRACE_S}"),
    );
    for field in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        check(
            c.pointer(&format!("/resources{field}")).is_some(),
            format!("no resources{}", field.replace('/', ".")),
        );
    }
    let pod_sc = sts.pointer("/spec/template/spec/securityContext");
    let sc = c.get("securityContext");
    let either = |field: &str| {
        sc.and_then(|s| s.get(field))
            .or_else(|| pod_sc.and_then(|s| s.get(field)))
    };
    check(
        either("runAsNonRoot") == Some(&json!(true)),
        "runAsNonRoot must be true".into(),
    );
    check(
        either("runAsUser") == Some(&json!(RUN_AS_USER)),
        format!("runAsUser must be {RUN_AS_USER}, the image's user"),
    );
    check(
        sc.and_then(|s| s.get("readOnlyRootFilesystem")) == Some(&json!(true)),
        "readOnlyRootFilesystem must be true".into(),
    );
    check(
        sc.and_then(|s| s.get("allowPrivilegeEscalation")) == Some(&json!(false)),
        "allowPrivilegeEscalation must be false".into(),
    );
    check(
        sc.and_then(|s| s.pointer("/capabilities/drop")) == Some(&json!(["ALL"])),
        "capabilities must drop ALL".into(),
    );
    check(
        sts.pointer("/spec/replicas").is_none(),
        "spec.replicas is set, but KEDA owns the instance count".into(),
    );
    let labels = sts
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(Value::Null);
    check(
        selects(
            sts.pointer("/spec/selector").unwrap_or(&Value::Null),
            &labels,
        ),
        "the selector does not match the pod template".into(),
    );
    let pdbs: Vec<&Value> = of_kind(docs, "PodDisruptionBudget")
        .filter(|p| selects(p.pointer("/spec/selector").unwrap_or(&Value::Null), &labels))
        .collect();
    check(
        pdbs.len() == 1 && int_at(pdbs[0], "/spec/maxUnavailable") == Some(1),
        format!(
            "one PodDisruptionBudget with maxUnavailable 1 must cover the pods, found {}",
            pdbs.len()
        ),
    );
    let service = find(docs, "Service", text_at(sts, "/spec/serviceName"));
    check(
        service.is_some_and(|s| {
            text_at(s, "/spec/clusterIP") == "None"
                && s.pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .is_some_and(|sel| {
                        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
        }),
        "serviceName must name a headless Service selecting the pods".into(),
    );
    problems
}

fn keda_problems(docs: &[Value], pod: &Pod<'_>) -> Vec<String> {
    let op = pod.operator();
    let what = format!("ScaledObject for {}", op.name);
    let mut problems = Vec::new();
    let scaled: Vec<&Value> = of_kind(docs, "ScaledObject")
        .filter(|s| {
            text_at(s, "/spec/scaleTargetRef/name") == op.name
                && text_at(s, "/spec/scaleTargetRef/kind") == "StatefulSet"
                && text_at(s, "/spec/scaleTargetRef/apiVersion") == "apps/v1"
        })
        .collect();
    let [so] = scaled.as_slice() else {
        return vec![format!(
            "{what}: one ScaledObject must scale StatefulSet {}, found {}",
            op.name,
            scaled.len()
        )];
    };
    let min = int_at(so, "/spec/minReplicaCount");
    let max = int_at(so, "/spec/maxReplicaCount").unwrap_or(100);
    if min != Some(i64::from(op.replicas)) {
        problems.push(format!(
            "{what}: minReplicaCount {min:?}, the topology's replicas is {}",
            op.replicas
        ));
    }
    let partitions = op
        .inputs
        .iter()
        .filter_map(|t| pod.topology.topic(t))
        .map(|t| i64::from(t.partitions))
        .min()
        .unwrap_or(0);
    if max > partitions || max < min.unwrap_or(1) {
        problems.push(format!(
            "{what}: maxReplicaCount {max} must lie between minReplicaCount and the input \
             partitions ({partitions}): more instances would own no partition"
        ));
    }
    let mut topics = Vec::new();
    for trigger in array_at(so, "/spec/triggers") {
        if text_at(trigger, "/type") != "kafka" {
            problems.push(format!("{what}: a {} trigger", text_at(trigger, "/type")));
            continue;
        }
        let meta = trigger.get("metadata").cloned().unwrap_or(Value::Null);
        topics.push(text_at(&meta, "/topic").to_string());
        if text_at(&meta, "/consumerGroup") != op.group_id {
            problems.push(format!(
                "{what}: consumerGroup {} instead of the operator's group {}",
                text_at(&meta, "/consumerGroup"),
                op.group_id
            ));
        }
        if text_at(&meta, "/offsetResetPolicy") != "earliest" {
            problems.push(format!(
                "{what}: offsetResetPolicy must be earliest, as the operators' consumers"
            ));
        }
        let bootstrap = match meta.get("bootstrapServersFromEnv").and_then(Value::as_str) {
            Some(var) => match pod.env.get(var) {
                Some(EnvValue::Literal(v)) => v.clone(),
                _ => format!("<{var} unset>"),
            },
            None => text_at(&meta, "/bootstrapServers").to_string(),
        };
        if bootstrap != pod.topology.connection.kafka.bootstrap_servers {
            problems.push(format!(
                "{what}: bootstrap servers {bootstrap}, the pods use {}",
                pod.topology.connection.kafka.bootstrap_servers
            ));
        }
        // KEDA's operator runs in a namespace of its own, where short Service names do not
        // resolve.
        if let Some(namespace) = so.pointer("/metadata/namespace").and_then(Value::as_str) {
            let qualified = format!(".{namespace}.");
            for server in bootstrap.split(',') {
                let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
                if !format!("{host}.").contains(&qualified) {
                    problems.push(format!(
                        "{what}: bootstrap server {server} is not qualified with the namespace \
                         {namespace}, so KEDA cannot resolve it"
                    ));
                }
            }
        }
        let auth_name = text_at(trigger, "/authenticationRef/name");
        let Some(auth) = find(docs, "TriggerAuthentication", auth_name) else {
            problems.push(format!(
                "{what}: TriggerAuthentication {auth_name:?} not in the build"
            ));
            continue;
        };
        let params = trigger_auth_params(docs, auth);
        let literal = |p: &str| match params.get(p) {
            Some(EnvValue::Literal(v)) => v.clone(),
            _ => String::new(),
        };
        let (sasl, tls) = match pod.topology.connection.kafka.security_protocol {
            SecurityProtocol::SaslSsl => ("scram_sha512", "enable"),
            SecurityProtocol::Ssl => ("none", "enable"),
            SecurityProtocol::Plaintext => ("none", "disable"),
        };
        if literal("sasl") != sasl || literal("tls") != tls {
            problems.push(format!(
                "{what}: KEDA connects with sasl={} tls={}, the pods with {:?}",
                literal("sasl"),
                literal("tls"),
                pod.topology.connection.kafka.security_protocol
            ));
        }
    }
    let wanted: BTreeSet<String> = op.inputs.iter().cloned().collect();
    let have: BTreeSet<String> = topics.iter().cloned().collect();
    if have != wanted || topics.len() != wanted.len() {
        problems.push(format!(
            "{what}: lag triggers on {topics:?}, the operator's inputs are {wanted:?}"
        ));
    }
    problems
}

/// One ACL, as Kafka stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Acl {
    resource: String,
    name: String,
    pattern: String,
    operation: String,
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} ({})",
            self.operation, self.resource, self.name, self.pattern
        )
    }
}

fn acl(resource: &str, name: &str, pattern: &str, operation: &str) -> Acl {
    Acl {
        resource: resource.into(),
        name: name.into(),
        pattern: pattern.into(),
        operation: operation.into(),
    }
}

/// The ACLs a KafkaUser grants; problems for what is not a plain allow from any host.
fn granted(user: &Value, problems: &mut Vec<String>) -> BTreeSet<Acl> {
    let mut acls = BTreeSet::new();
    for rule in array_at(user, "/spec/authorization/acls") {
        let resource = rule.get("resource").cloned().unwrap_or(Value::Null);
        let ty = rule.get("type").and_then(Value::as_str).unwrap_or("allow");
        let host = rule.get("host").and_then(Value::as_str).unwrap_or("*");
        if ty != "allow" || host != "*" {
            problems.push(format!("{}: a rule of type {ty} for host {host}", id(user)));
        }
        for op in array_at(rule, "/operations") {
            acls.insert(acl(
                text_at(&resource, "/type"),
                text_at(&resource, "/name"),
                resource
                    .get("patternType")
                    .and_then(Value::as_str)
                    .unwrap_or("literal"),
                op.as_str().unwrap_or_default(),
            ));
        }
    }
    acls
}

/// The ACLs operator `op` needs, and no more: read its inputs, tables and the outputs it reads
/// back; write its outputs and DLQ; its group (and, when stateful, the groups of its restore,
/// table and read-back readers); its transactional ids when exactly once.
fn needed(op: &OperatorCommon<'_>) -> BTreeSet<Acl> {
    let mut acls = BTreeSet::new();
    let mut reads: Vec<&String> = op.inputs.iter().chain(op.tables).collect();
    if READS_BACK_OUTPUTS.contains(&op.name) {
        reads.extend(op.outputs);
    }
    for topic in reads {
        acls.insert(acl("topic", topic, "literal", "Read"));
        acls.insert(acl("topic", topic, "literal", "Describe"));
    }
    for topic in op.outputs.iter().map(String::as_str).chain([op.dlq]) {
        acls.insert(acl("topic", topic, "literal", "Write"));
        acls.insert(acl("topic", topic, "literal", "Describe"));
    }
    acls.insert(acl("group", &op.group_id, "literal", "Read"));
    if STATEFUL.contains(&op.name) {
        acls.insert(acl("group", &format!("{}.", op.group_id), "prefix", "Read"));
    }
    if op.delivery == Delivery::ExactlyOnce {
        let prefix = format!("{}.", op.transactional_id_prefix);
        acls.insert(acl("transactionalId", &prefix, "prefix", "Write"));
        acls.insert(acl("transactionalId", &prefix, "prefix", "Describe"));
    }
    acls
}

/// The group ids of the consumers an operator opens besides its group member, as the code
/// names them (`PID` for the process id).
fn auxiliary_groups(op: &OperatorCommon<'_>) -> Vec<String> {
    let group = &op.group_id;
    match op.name {
        // crates/runtime/src/replay.rs, operators/surge-pricer/src/published.rs
        SURGE_PRICER => vec![
            format!("{group}.restore"),
            format!("surgeflow.surge-pricer.readback.{PID}"),
        ],
        // replay.rs, operators/matcher/src/tables.rs and published.rs
        MATCHER => vec![
            format!("{group}.restore"),
            format!("{group}.tables.{PID}"),
            format!("{group}.readback.{PID}"),
        ],
        _ => Vec::new(),
    }
}

fn allows(acls: &BTreeSet<Acl>, resource: &str, name: &str, operation: &str) -> bool {
    acls.iter().any(|a| {
        a.resource == resource
            && a.operation == operation
            && match a.pattern.as_str() {
                "prefix" => name.starts_with(&a.name),
                _ => a.name == name,
            }
    })
}

fn compare_acls(what: &str, have: &BTreeSet<Acl>, want: &BTreeSet<Acl>) -> Vec<String> {
    let mut problems = Vec::new();
    for missing in want.difference(have) {
        problems.push(format!("{what}: missing ACL {missing}"));
    }
    for extra in have.difference(want) {
        problems.push(format!("{what}: extra ACL {extra}"));
    }
    problems
}

fn user_problems(docs: &[Value], pods: &[Pod<'_>]) -> Vec<String> {
    let mut problems = Vec::new();
    let users: BTreeMap<&str, &Value> = of_kind(docs, "KafkaUser").map(|u| (name(u), u)).collect();
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    for pod in pods {
        let op = pod.operator();
        let kafka = &pod.topology.connection.kafka;
        let Some(sasl) = &kafka.sasl else {
            if !users.is_empty() {
                problems.push(format!(
                    "{}: KafkaUsers are deployed but the operator does not authenticate",
                    op.name
                ));
            }
            continue;
        };
        let what = format!("{} (user {})", op.name, sasl.username);
        if kafka.security_protocol != SecurityProtocol::SaslSsl
            || sasl.mechanism != SaslMechanism::ScramSha512
        {
            problems.push(format!("{what}: must use SASL_SSL with SCRAM-SHA-512"));
        }
        if kafka.tls.as_ref().is_none_or(|t| !t.verify_hostname) {
            problems.push(format!(
                "{what}: must verify the brokers' CA and host names"
            ));
        }
        let Some(user) = users.get(sasl.username.as_str()) else {
            problems.push(format!("{what}: no KafkaUser {}", sasl.username));
            continue;
        };
        claimed.insert(sasl.username.clone());
        if text_at(user, "/spec/authentication/type") != "scram-sha-512"
            || text_at(user, "/spec/authorization/type") != "simple"
        {
            problems.push(format!(
                "{what}: the KafkaUser must use scram-sha-512 and simple authorization"
            ));
        }
        // The password is the one Strimzi writes for that user.
        let secrets = pod_secrets(pod.sts);
        if !secrets
            .iter()
            .any(|(s, keys)| s == &sasl.username && keys.iter().any(|k| k == "password"))
        {
            problems.push(format!(
                "{what}: the pod does not mount the password of Secret {}",
                sasl.username
            ));
        }
        let have = granted(user, &mut problems);
        problems.extend(compare_acls(&what, &have, &needed(&op)));
        for group in auxiliary_groups(&op) {
            if !allows(&have, "group", &group, "Read") {
                problems.push(format!("{what}: reader group {group} not allowed"));
            }
        }
    }
    // KEDA's user: describe the groups and inputs of every operator, nothing else.
    for auth in of_kind(docs, "TriggerAuthentication") {
        let params = trigger_auth_params(docs, auth);
        let Some(EnvValue::Literal(username)) = params.get("username") else {
            continue;
        };
        let what = format!("{} (user {username})", id(auth));
        let Some(user) = users.get(username.as_str()) else {
            problems.push(format!("{what}: no KafkaUser {username}"));
            continue;
        };
        claimed.insert(username.clone());
        if params.get("password")
            != Some(&EnvValue::Secret {
                name: username.clone(),
                key: "password".into(),
            })
        {
            problems.push(format!(
                "{what}: the password must come from Secret {username}, key password"
            ));
        }
        let mut want = BTreeSet::new();
        if let Some(pod) = pods.first() {
            for op in pod.topology.operators.iter() {
                want.insert(acl("group", &op.group_id, "literal", "Describe"));
                for topic in op.inputs {
                    want.insert(acl("topic", topic, "literal", "Describe"));
                }
            }
        }
        let have = granted(user, &mut problems);
        problems.extend(compare_acls(&what, &have, &want));
    }
    for user in users.keys() {
        if !claimed.contains(*user) {
            problems.push(format!("KafkaUser/{user}: used by no operator nor KEDA"));
        }
    }
    problems
}

fn monitoring_problems(docs: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let monitors: Vec<&Value> = of_kind(docs, "PodMonitor").collect();
    for sts in of_kind(docs, "StatefulSet") {
        let labels = sts
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or(Value::Null);
        let scraped = monitors.iter().any(|m| {
            selects(m.pointer("/spec/selector").unwrap_or(&Value::Null), &labels)
                && array_at(m, "/spec/podMetricsEndpoints").iter().any(|e| {
                    text_at(e, "/path") == "/metrics"
                        && array_at(sts, "/spec/template/spec/containers/0/ports")
                            .iter()
                            .any(|p| p.get("name") == e.get("port"))
                })
        });
        if !scraped {
            problems.push(format!(
                "{}: no PodMonitor scrapes /metrics on a port of its pods",
                id(sts)
            ));
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[test]
fn every_build_passes_strict_kubernetes_validation() {
    let tools = tools();
    let scratch = Scratch::new("validate");
    for build in builds() {
        let file = scratch
            .0
            .join(format!("{}.yaml", build.name.replace('/', "-")));
        std::fs::write(&file, &build.yaml).expect("writing the build");
        let out = Command::new(&tools.kubernetes_validate)
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file)
            .output()
            .expect("running kubernetes-validate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() && !stdout.lines().any(|l| l.starts_with("ERROR")),
            "k8s/{}: kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{report}",
            build.name
        );
        let native = build.docs.iter().filter(|d| !is_custom(d)).count();
        let passed = stdout
            .lines()
            .filter(|l| l.starts_with("INFO") && l.contains(" passed for resource "))
            .count();
        assert_eq!(
            passed, native,
            "k8s/{}: {native} Kubernetes resources, {passed} validated:\n{report}",
            build.name
        );
        let custom: BTreeSet<String> = build
            .docs
            .iter()
            .filter(|d| is_custom(d))
            .map(|d| format!("kind {} with api version {}", kind(d), api_version(d)))
            .collect();
        for line in stdout.lines().filter(|l| l.starts_with("WARN")) {
            assert!(
                custom.iter().any(|c| line.contains(c.as_str())),
                "k8s/{}: unexpected warning (only custom resources, checked against their \
                 CRDs, may be unknown to kubernetes-validate): {line}",
                build.name
            );
        }
        for doc in &build.docs {
            assert!(
                is_dns_subdomain(name(doc)),
                "k8s/{}: {} is not a valid name",
                build.name,
                id(doc)
            );
        }
    }
}

#[test]
fn custom_resources_match_their_crd_schemas() {
    let crds = crds();
    let mut validators = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for build in builds() {
        for doc in build.docs.iter().filter(|d| is_custom(d)) {
            let (group, version) = api_version(doc)
                .split_once('/')
                .expect("custom resources have a group");
            let key = (
                group.to_string(),
                version.to_string(),
                kind(doc).to_string(),
            );
            let Some((schema, deprecated)) = crds.versions.get(&key) else {
                problems.push(format!(
                    "k8s/{}: {} ({}): no served CRD version in {} (run {TOOLS_SCRIPT}; it \
                     fetches KEDA, prometheus-operator and Strimzi CRDs)",
                    build.name,
                    id(doc),
                    api_version(doc),
                    tools().crds.display()
                ));
                continue;
            };
            if *deprecated {
                problems.push(format!(
                    "k8s/{}: {} uses deprecated {}",
                    build.name,
                    id(doc),
                    api_version(doc)
                ));
            }
            let validator = validators.entry(key.clone()).or_insert_with(|| {
                jsonschema::draft4::options()
                    .should_validate_formats(false)
                    .build(schema)
                    .unwrap_or_else(|e| panic!("the schema of {key:?} does not compile: {e}"))
            });
            for error in validator.iter_errors(doc) {
                problems.push(format!(
                    "k8s/{}: {} at {}: {error}",
                    build.name,
                    id(doc),
                    error.instance_path()
                ));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let production = build(PRODUCTION);
    for wanted in [
        "KafkaTopic",
        "KafkaUser",
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
    ] {
        assert!(
            of_kind(&production.docs, wanted).next().is_some(),
            "k8s/{PRODUCTION} has no {wanted}"
        );
    }
    assert!(checked > 0);
}

/// The strictness added to the CRD schemas is real: an unknown field and a wrong type fail.
#[test]
fn the_crd_check_rejects_unknown_fields_and_wrong_types() {
    let crds = crds();
    let key = |g: &str, v: &str, k: &str| (g.to_string(), v.to_string(), k.to_string());
    let (topic_schema, _) = &crds.versions[&key("kafka.strimzi.io", "v1", "KafkaTopic")];
    let (user_schema, _) = &crds.versions[&key("kafka.strimzi.io", "v1", "KafkaUser")];
    let valid = |schema: &Value, doc: &Value| {
        jsonschema::draft4::options()
            .should_validate_formats(false)
            .build(schema)
            .expect("compiling")
            .is_valid(doc)
    };
    let topic = json!({
        "apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic",
        "metadata": { "name": "t", "labels": { "strimzi.io/cluster": "c" } },
        "spec": {
            "topicName": "a.b",
            "partitions": 3,
            "replicas": 1,
            "config": { "retention.ms": 1 }
        }
    });
    assert!(valid(topic_schema, &topic));
    let mut typo = topic.clone();
    typo["spec"]["partition"] = json!(3);
    assert!(!valid(topic_schema, &typo), "an unknown field must fail");
    let mut wrong = topic.clone();
    wrong["spec"]["partitions"] = json!("3");
    assert!(
        !valid(topic_schema, &wrong),
        "a string partition count must fail"
    );
    let user = json!({
        "apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser", "metadata": { "name": "u" },
        "spec": {
            "authentication": { "type": "scram-sha-512" },
            "authorization": {
                "type": "simple",
                "acls": [{
                    "resource": { "type": "topic", "name": "a", "patternType": "literal" },
                    "operations": ["Read"]
                }]
            }
        }
    });
    assert!(valid(user_schema, &user));
    let mut singular = user.clone();
    singular["spec"]["authorization"]["acls"][0]["operation"] = json!("Read");
    assert!(!valid(user_schema, &singular), "`operation` is not in v1");
    let mut bad_op = user;
    bad_op["spec"]["authorization"]["acls"][0]["operations"] = json!(["Reed"]);
    assert!(
        !valid(user_schema, &bad_op),
        "an unknown operation must fail"
    );
}

#[test]
fn the_topology_in_k8s_is_a_byte_identical_copy() {
    let root = project_root();
    let original = std::fs::read(root.join("topology.yaml")).expect("reading topology.yaml");
    let copy = std::fs::read(k8s_dir().join("base/topology.yaml")).unwrap_or_default();
    assert!(
        original == copy,
        "k8s/base/topology.yaml differs from topology.yaml (kustomize reads no file outside \
         k8s/base, hence the copy): run `cp topology.yaml k8s/base/topology.yaml`"
    );
    for build in builds() {
        for sts in of_kind(&build.docs, "StatefulSet") {
            let container = &array_at(sts, "/spec/template/spec/containers")[0];
            assert_eq!(
                mounted_topology(&build.docs, sts, container).map(String::into_bytes),
                Some(original.clone()),
                "k8s/{}: {} does not mount topology.yaml at {TOPOLOGY_PATH}",
                build.name,
                id(sts)
            );
        }
    }
}

#[test]
fn every_build_agrees_with_the_topology() {
    let problems: Vec<String> = builds()
        .iter()
        .flat_map(|build| {
            disagreements(&build.docs)
                .into_iter()
                .map(move |p| format!("k8s/{}: {p}", build.name))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "k8s/ disagrees with topology.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn production_authenticates_every_operator_with_its_own_user() {
    let production = build(PRODUCTION);
    let scratch = Scratch::new("production");
    let mut problems = Vec::new();
    let pods = pods(&production.docs, &scratch.0, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(pods.len(), reference_topology().operators.iter().count());
    let mut users = BTreeSet::new();
    for pod in &pods {
        let kafka = &pod.topology.connection.kafka;
        assert_eq!(kafka.security_protocol, SecurityProtocol::SaslSsl);
        let sasl = kafka.sasl.as_ref().expect("SASL settings");
        assert!(
            users.insert(sasl.username.clone()),
            "{} shared",
            sasl.username
        );
        assert!(
            pod.topology.connection.registry.url.starts_with("https://"),
            "the registry must be reached over HTTPS in production"
        );
        assert!(pod.topology.connection.registry.password.is_some());
    }
    for dev in ["base", "overlays/dev"] {
        assert!(
            of_kind(&build(dev).docs, "KafkaUser").next().is_none(),
            "k8s/{dev} is for unauthenticated development clusters"
        );
    }
}

#[test]
fn secrets_are_referenced_never_inlined() {
    let operations = std::fs::read_to_string(project_root().join("docs/operations.md"))
        .expect("reading docs/operations.md");
    for build in builds() {
        let docs = &build.docs;
        let mut problems = Vec::new();
        for secret in of_kind(docs, "Secret") {
            problems.push(format!(
                "{}: Secrets are never part of the manifests",
                id(secret)
            ));
        }
        let clusters: BTreeSet<&str> = docs
            .iter()
            .filter_map(|d| {
                d.pointer("/metadata/labels/strimzi.io~1cluster")
                    .and_then(Value::as_str)
            })
            .collect();
        let strimzi_made = |secret: &str| {
            find(docs, "KafkaUser", secret).is_some()
                || clusters
                    .iter()
                    .any(|c| secret == format!("{c}-cluster-ca-cert"))
        };
        let mut referenced: Vec<(String, String)> = Vec::new();
        for sts in of_kind(docs, "StatefulSet") {
            for (secret, _) in pod_secrets(sts) {
                referenced.push((id(sts), secret));
            }
            for container in array_at(sts, "/spec/template/spec/containers") {
                let env = container_env(docs, container).unwrap_or_default();
                for (var, value) in env {
                    let sensitive = ["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL"]
                        .iter()
                        .any(|w| var.to_ascii_uppercase().contains(w));
                    if let EnvValue::Literal(v) = value
                        && sensitive
                        && !(var.ends_with("_FILE") && v.starts_with('/'))
                    {
                        problems.push(format!(
                            "{}: {var} holds a value, not a mounted file",
                            id(sts)
                        ));
                    }
                }
            }
        }
        for auth in of_kind(docs, "TriggerAuthentication") {
            for r in array_at(auth, "/spec/secretTargetRef") {
                referenced.push((id(auth), text_at(r, "/name").to_string()));
            }
        }
        for cm in of_kind(docs, "ConfigMap") {
            for (k, v) in cm
                .get("data")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let k = k.to_ascii_lowercase();
                if (k.contains("password") || k.contains("secret") || k.contains("token"))
                    && !v.as_str().unwrap_or_default().starts_with('/')
                {
                    problems.push(format!("{}: {k} holds a value, not a path", id(cm)));
                }
            }
        }
        for (whose, secret) in referenced {
            if strimzi_made(&secret) {
                continue;
            }
            if !HAND_MADE_SECRETS.contains(&secret.as_str()) {
                problems.push(format!(
                    "{whose}: Secret {secret} is neither written by Strimzi nor documented"
                ));
            } else if !operations.contains(&format!("`{secret}`")) {
                problems.push(format!(
                    "{whose}: docs/operations.md does not say how to create Secret `{secret}`"
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "k8s/{}:\n{}",
            build.name,
            problems.join("\n")
        );
    }
}

#[test]
fn the_image_ships_every_binary_and_the_schemas() {
    let root = project_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("reading Dockerfile");
    assert!(dockerfile.matches("\nFROM ").count() >= 1 && dockerfile.contains(" AS build"));
    for op in reference_topology().operators.iter() {
        assert!(
            dockerfile.contains(&format!("target/release/{}", op.name)),
            "the Dockerfile does not ship {}",
            op.name
        );
    }
    assert!(dockerfile.contains("target/release/surgeflow "));
    assert!(
        dockerfile.contains(&format!("COPY schemas/ {SCHEMAS_PATH}/")),
        "the topology at {TOPOLOGY_PATH} references schemas/*.avsc: the image must hold them"
    );
    assert!(dockerfile.contains(&format!("USER {RUN_AS_USER}:{RUN_AS_USER}")));
    // The schemas sit next to the mounted topology, where its relative paths point.
    assert_eq!(
        Path::new(TOPOLOGY_PATH).parent().map(|p| p.join("schemas")),
        Some(PathBuf::from(SCHEMAS_PATH))
    );
}

// ------------------------------------------------------------------------------------------
// The checks cannot pass vacuously
// ------------------------------------------------------------------------------------------

fn doc_mut<'a>(docs: &'a mut [Value], wanted: &str, wanted_name: &str) -> &'a mut Value {
    docs.iter_mut()
        .find(|d| kind(d) == wanted && name(d) == wanted_name)
        .unwrap_or_else(|| panic!("{wanted}/{wanted_name} not in the build"))
}

fn container_mut<'a>(docs: &'a mut [Value], sts: &str) -> &'a mut Value {
    &mut doc_mut(docs, "StatefulSet", sts)["spec"]["template"]["spec"]["containers"][0]
}

fn acls_mut<'a>(docs: &'a mut [Value], user: &str) -> &'a mut Vec<Value> {
    doc_mut(docs, "KafkaUser", user)
        .pointer_mut("/spec/authorization/acls")
        .and_then(Value::as_array_mut)
        .expect("ACLs")
}

fn trigger_mut<'a>(docs: &'a mut [Value], scaled: &str, index: usize) -> &'a mut Value {
    &mut doc_mut(docs, "ScaledObject", scaled)["spec"]["triggers"][index]["metadata"]
}

type Mutation = fn(&mut Vec<Value>);

#[test]
fn mutated_copies_are_caught() {
    let production = build(PRODUCTION);
    assert_eq!(disagreements(&production.docs), Vec::<String>::new());
    let connection = of_kind(&production.docs, "ConfigMap")
        .map(name)
        .find(|n| n.starts_with("surgeflow-connection"))
        .expect("the connection ConfigMap")
        .to_string();
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "an extra ACL",
            |docs| {
                acls_mut(docs, "surgeflow-location-router").push(json!({
                    "resource": { "type": "topic", "name": "geo.trip", "patternType": "literal" },
                    "operations": ["Read"]
                }));
            },
            "extra ACL Read topic geo.trip (literal)",
        ),
        (
            "a missing ACL",
            |docs| {
                acls_mut(docs, "surgeflow-matcher")
                    .retain(|a| a["resource"]["type"] != "transactionalId");
            },
            "missing ACL Write transactionalId surgeflow.matcher.",
        ),
        (
            "a prefix ACL widened to every topic",
            |docs| {
                let resource = &mut acls_mut(docs, "surgeflow-trip-router")[0]["resource"];
                resource["name"] = json!("trip.");
                resource["patternType"] = json!("prefix");
            },
            "extra ACL Read topic trip. (prefix)",
        ),
        (
            "a changed partition count",
            |docs| doc_mut(docs, "KafkaTopic", "geo-driver")["spec"]["partitions"] = json!(24),
            "topic geo.driver (KafkaTopic/geo-driver): partitions 24",
        ),
        (
            "a missing KafkaTopic",
            |docs| docs.retain(|d| !(kind(d) == "KafkaTopic" && name(d) == "dlq-geo")),
            "topic dlq.geo: no KafkaTopic",
        ),
        (
            "a changed topic config",
            |docs| {
                let config = &mut doc_mut(docs, "KafkaTopic", "surge-multiplier")["spec"]["config"];
                config["min.compaction.lag.ms"] = json!(1000);
            },
            "topic surge.multiplier (KafkaTopic/surge-multiplier): config",
        ),
        (
            "a KafkaTopic for an undeclared topic",
            |docs| {
                let mut extra = doc_mut(docs, "KafkaTopic", "dlq-geo").clone();
                extra["metadata"]["name"] = json!("dlq-other");
                extra["spec"]["topicName"] = json!("dlq.other");
                docs.push(extra);
            },
            "topic dlq.other (KafkaTopic/dlq-other): a KafkaTopic for a topic the topology",
        ),
        (
            "a wrong consumer group in KEDA",
            |docs| {
                trigger_mut(docs, "matcher", 0)["consumerGroup"] = json!("surgeflow.other");
            },
            "consumerGroup surgeflow.other instead of the operator's group surgeflow.matcher",
        ),
        (
            "a KEDA trigger on a topic that is not an input",
            |docs| {
                trigger_mut(docs, "surge-pricer", 1)["topic"] = json!("surge.multiplier");
            },
            "ScaledObject for surge-pricer: lag triggers on",
        ),
        (
            "more instances than input partitions",
            |docs| {
                doc_mut(docs, "ScaledObject", "location-router")["spec"]["maxReplicaCount"] =
                    json!(7)
            },
            "maxReplicaCount 7 must lie between",
        ),
        (
            "a short bootstrap host name",
            |docs| {
                let connection = docs
                    .iter_mut()
                    .find(|d| name(d).starts_with("surgeflow-connection"))
                    .expect("the connection ConfigMap");
                connection["data"]["SURGEFLOW_KAFKA_BOOTSTRAP"] =
                    json!("surgeflow-kafka-bootstrap:9093");
            },
            "is not qualified with the namespace surgeflow",
        ),
        (
            "a wrong HTTP port",
            |docs| container_mut(docs, "trip-router")["ports"][0]["containerPort"] = json!(9999),
            "StatefulSet/trip-router: container port `http`",
        ),
        (
            "a readiness probe on the liveness path",
            |docs| {
                container_mut(docs, "surge-pricer")["readinessProbe"]["httpGet"]["path"] =
                    json!("/healthz")
            },
            "readinessProbe must GET /readyz",
        ),
        (
            "a fixed instance id",
            |docs| container_mut(docs, "matcher")["args"][3] = json!("0"),
            "StatefulSet/matcher: args",
        ),
        (
            "a pod authenticating as another operator's user",
            |docs| {
                for var in container_mut(docs, "matcher")["env"]
                    .as_array_mut()
                    .unwrap()
                {
                    if var["name"] == "SURGEFLOW__CONNECTION__KAFKA__SASL__USERNAME" {
                        var["value"] = json!("surgeflow-surge-pricer");
                    }
                }
            },
            "matcher (user surgeflow-surge-pricer): missing ACL",
        ),
        (
            "an operator without its workload",
            |docs| docs.retain(|d| !(kind(d) == "StatefulSet" && name(d) == "trip-router")),
            "StatefulSets deployed",
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut docs = production.docs.clone();
        mutate(&mut docs);
        let problems = disagreements(&docs);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem containing {expected:?}, got:\n{}",
            problems.join("\n")
        );
    }
    // The topology side: the pods' environment changes the replication and the input
    // partitions, and the KafkaTopics no longer match.
    let mut docs = production.docs.clone();
    let data = &mut doc_mut(&mut docs, "ConfigMap", &connection)["data"];
    data["SURGEFLOW_REPLICATION"] = json!("2");
    data["SURGEFLOW_INPUT_PARTITIONS"] = json!("8");
    let problems = disagreements(&docs);
    for expected in [
        "topic location.update (KafkaTopic/location-update): partitions 6 in the KafkaTopic, \
         8 in the topology",
        "topic geo.trip (KafkaTopic/geo-trip): replicas 3 in the KafkaTopic, \
         replication 2 in the topology",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "expected {expected:?}, got:\n{}",
            problems.join("\n")
        );
    }
}
