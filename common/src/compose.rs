//! Keeping `compose.yaml` wired like the local stack: each service's settings whose defaults
//! point at this machine (`127.0.0.1`, `localhost`) must be set, in the service's `environment`,
//! to the compose host that runs the dependency. A setting left out falls back to loopback inside
//! the container, where nothing listens: the feature behind it answers 503 (seen with the API's
//! lake settings before they were wired).
//!
//! Each service checks its own config type in a unit test (`compose_wiring`), so a new setting
//! with a loopback default fails that test until compose names a host for it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::ENV_PREFIX;

/// Whether `value` names this machine.
pub fn is_loopback(value: &str) -> bool {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|host| value.contains(host))
}

/// The settings of `config` whose value points at this machine, as the `TRIBUTARY_…` environment
/// keys that override them (`lake.s3.endpoint` → `TRIBUTARY_LAKE__S3__ENDPOINT`), sorted. Pure.
pub fn loopback_settings<T: Serialize>(config: &T) -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (name, field) in fields {
                    let key = if prefix.is_empty() {
                        name.to_uppercase()
                    } else {
                        format!("{prefix}__{}", name.to_uppercase())
                    };
                    walk(&key, field, out);
                }
            }
            Value::String(text) if is_loopback(text) => out.push(format!("{ENV_PREFIX}{prefix}")),
            Value::Array(items) if items.iter().any(|i| i.as_str().is_some_and(is_loopback)) => {
                out.push(format!("{ENV_PREFIX}{prefix}"))
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::to_value(config) {
        walk("", &value, &mut out);
    }
    out.sort();
    out
}

/// The `environment` of `service` in the compose file `yaml` (map or `KEY=value` list form).
pub fn service_environment(yaml: &str, service: &str) -> Result<BTreeMap<String, String>, String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(yaml).map_err(|e| format!("compose file is not YAML: {e}"))?;
    let service_doc = doc
        .get("services")
        .and_then(|s| s.get(service))
        .ok_or_else(|| format!("compose has no service {service:?}"))?;
    let scalar = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    };
    let mut env = BTreeMap::new();
    match service_doc.get("environment") {
        Some(serde_yaml::Value::Mapping(map)) => {
            for (k, v) in map {
                env.insert(scalar(k), scalar(v));
            }
        }
        Some(serde_yaml::Value::Sequence(items)) => {
            for item in items {
                let text = scalar(item);
                let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    Ok(env)
}

/// What is wrong with the wiring of `service` in the compose file `yaml`, given its config
/// defaults: a loopback setting it does not override, or an override (or any other variable)
/// that still names loopback. Empty when the service is wired to compose hosts only.
pub fn wiring_problems<T: Serialize>(yaml: &str, service: &str, defaults: &T) -> Vec<String> {
    let env = match service_environment(yaml, service) {
        Ok(env) => env,
        Err(problem) => return vec![problem],
    };
    let mut problems: Vec<String> = loopback_settings(defaults)
        .into_iter()
        .filter(|key| !env.contains_key(key))
        .map(|key| {
            format!("{service}: {key} is not set, so it defaults to this container's loopback")
        })
        .collect();
    problems.extend(
        env.iter()
            .filter(|(_, value)| is_loopback(value))
            .map(|(key, value)| {
                format!("{service}: {key}={value} names loopback, not a compose host")
            }),
    );
    problems
}

/// For a service's `compose_wiring` unit test: reads `compose.yaml` at the root of the
/// workspace holding `manifest_dir` (pass `env!("CARGO_MANIFEST_DIR")`) and panics with every
/// [`wiring_problems`] of `service`.
pub fn assert_wired<T: Serialize>(manifest_dir: &str, service: &str, defaults: &T) {
    let path = std::path::Path::new(manifest_dir).join("../compose.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let problems = wiring_problems(&yaml, service, defaults);
    assert!(problems.is_empty(), "compose.yaml: {problems:#?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Nested {
        url: String,
        brokers: Vec<String>,
        name: String,
    }

    #[derive(Serialize)]
    struct Config {
        listen: String,
        store: Nested,
    }

    fn config() -> Config {
        Config {
            listen: "127.0.0.1:8080".into(),
            store: Nested {
                url: "http://localhost:8123".into(),
                brokers: vec!["127.0.0.1:9092".into()],
                name: "marts".into(),
            },
        }
    }

    #[test]
    fn loopback_settings_are_named_by_their_environment_keys() {
        assert_eq!(
            loopback_settings(&config()),
            [
                "TRIBUTARY_LISTEN",
                "TRIBUTARY_STORE__BROKERS",
                "TRIBUTARY_STORE__URL"
            ]
        );
    }

    #[test]
    fn a_missing_or_loopback_override_is_a_problem() {
        let yaml = "services:\n  svc:\n    environment:\n      TRIBUTARY_LISTEN: 0.0.0.0:8080\n      TRIBUTARY_STORE__URL: http://127.0.0.1:8123\n";
        let problems = wiring_problems(yaml, "svc", &config());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("TRIBUTARY_STORE__BROKERS is not set"));
        assert!(problems[1].contains("TRIBUTARY_STORE__URL=http://127.0.0.1:8123"));
        let wired = "services:\n  svc:\n    environment:\n      - TRIBUTARY_LISTEN=0.0.0.0:8080\n      - TRIBUTARY_STORE__URL=http://clickhouse:8123\n      - TRIBUTARY_STORE__BROKERS=kafka:9092\n";
        assert!(wiring_problems(wired, "svc", &config()).is_empty());
        assert_eq!(wiring_problems(wired, "other", &config()).len(), 1);
    }
}
