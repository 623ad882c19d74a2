//! Layered configuration: built-in defaults → TOML file → `TRIBUTARY_*` environment.
//!
//! Nested keys use `__` in the environment: `TRIBUTARY_KAFKA__BROKERS=host:9092` sets
//! `kafka.brokers`. Unknown keys are refused so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Prefix of every environment variable Tributary reads for configuration.
pub const ENV_PREFIX: &str = "TRIBUTARY_";

/// `TRIBUTARY_*` variables that are read elsewhere and are not config keys.
pub const NOT_CONFIG_KEYS: &[&str] = &[
    "TRIBUTARY_CONFIG",
    "TRIBUTARY_LOG_FORMAT",
    crate::profile::PROFILE_ENV,
];

/// Configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("config file {path} does not exist")]
    MissingFile {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// A value is missing, mistyped, or a key is unknown.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
}

/// Loads a service's config: `T::default()`, then `file` if given, then the environment.
///
/// The environment is passed in (as `(key, value)` pairs) rather than read here so loading is
/// testable; binaries pass `std::env::vars()`.
pub fn load<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        figment = figment.merge(Toml::file(path));
    }
    let vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(key, _)| key.starts_with(ENV_PREFIX) && !NOT_CONFIG_KEYS.contains(&key.as_str()))
        .collect();
    // figment's own `Env` provider reads the process environment; folding our list keeps this testable.
    let env_figment = vars.iter().fold(Figment::new(), |fig, (key, value)| {
        let stripped = key[ENV_PREFIX.len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        fig.merge(Serialized::default(&stripped, parse_env_value(value)))
    });
    figment = figment.merge(env_figment);
    figment
        .extract()
        .map_err(|e| ConfigError::Invalid(Box::new(e)))
}

/// Environment values are strings; numbers and booleans are recognised as such so they can
/// fill typed fields (figment's own `Env` provider does the same).
fn parse_env_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    value
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(value.to_string()))
}

/// Where Kafka is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
        }
    }
}

/// Where the lake is: the Iceberg SQL catalog (in Postgres) and the warehouse it points into.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSettings {
    /// Catalog name as recorded in `iceberg_tables.catalog_name`.
    pub catalog_name: String,
    /// Postgres URL of the SQL catalog (the same tables Java's JdbcCatalog uses).
    pub catalog_uri: String,
    /// `s3://bucket[/prefix]` on the object store, or a local folder (absolute or relative to
    /// the working directory) — the embedded default.
    pub warehouse: String,
    /// Iceberg namespace of the raw tables (tests use their own to stay apart).
    pub namespace: String,
    /// Object-store credentials and endpoint, used when `warehouse` is `s3://…`.
    pub s3: S3Settings,
}

impl Default for LakeSettings {
    fn default() -> Self {
        Self {
            catalog_name: "tributary".into(),
            catalog_uri: "postgres://tributary:tributary@127.0.0.1:5432/tributary".into(),
            warehouse: ".stack/warehouse".into(),
            namespace: crate::names::LAKE_NAMESPACE.into(),
            s3: S3Settings::default(),
        }
    }
}

impl LakeSettings {
    /// The credentials a service of this lake does not use, as paths of its config
    /// ([`crate::profile::check_section`]): `lake.s3` when the warehouse is a local folder.
    pub fn unused_credentials(&self) -> &'static [&'static str] {
        if self.warehouse.starts_with("s3://") {
            &[]
        } else {
            &["lake.s3"]
        }
    }
}

/// S3-compatible object store settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Region (S3-compatible stores accept any).
    pub region: String,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:9000".into(),
            access_key_id: "tributary".into(),
            secret_access_key: "tributary-secret".into(),
            region: "us-east-1".into(),
        }
    }
}

/// Where ClickHouse is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSettings {
    /// HTTP interface URL.
    pub url: String,
    /// Database holding the marts.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (empty for the local stack's `default` user).
    pub password: String,
    /// A read with no complete answer after this many milliseconds fails (`TimedOut`) instead
    /// of waiting on a stalled server or connection; a bulk insert gets this much between two
    /// blocks written and for the final answer; 0: no bound.
    pub timeout_ms: u64,
    /// How request and response bodies travel: `lz4` (the default) or `none`.
    pub compression: ClickHouseCompression,
}

/// How the HTTP bodies to and from ClickHouse are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClickHouseCompression {
    /// Plain bodies: no compressing on either side. On the local stack no faster than LZ4 for a
    /// publication (`bench/README.md`, "Publishing without copies"); for a setup where the
    /// CPU is scarcer than the bytes.
    None,
    /// LZ4 blocks (the `clickhouse` crate's own default).
    #[default]
    Lz4,
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: crate::names::MARTS_DATABASE.into(),
            user: "default".into(),
            password: String::new(),
            timeout_ms: 10_000,
            compression: ClickHouseCompression::default(),
        }
    }
}

/// Shown instead of a secret in `Debug` output (config structs end up in logs and errors).
pub const REDACTED: &str = "<redacted>";

/// `url` with the password of its `user:password@` part replaced by [`REDACTED`], for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let password = if user_info.contains(':') {
                format!(":{REDACTED}")
            } else {
                String::new()
            };
            format!("{scheme}://{user}{password}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

impl std::fmt::Debug for LakeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSettings")
            .field("catalog_name", &self.catalog_name)
            .field("catalog_uri", &redact_url(&self.catalog_uri))
            .field("warehouse", &self.warehouse)
            .field("namespace", &self.namespace)
            .field("s3", &self.s3)
            .finish()
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &REDACTED)
            .field("region", &self.region)
            .finish()
    }
}

impl std::fmt::Debug for ClickHouseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSettings")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &REDACTED)
            .field("timeout_ms", &self.timeout_ms)
            .field("compression", &self.compression)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Svc {
        kafka: KafkaSettings,
        lake: LakeSettings,
        batch_rows: u64,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let svc: Svc = load(None, env(&[])).unwrap();
        assert_eq!(svc.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(svc.lake.warehouse, ".stack/warehouse");
    }

    #[test]
    fn environment_overrides_nested_and_typed_values() {
        let svc: Svc = load(
            None,
            env(&[
                ("TRIBUTARY_KAFKA__BROKERS", "kafka:9092"),
                ("TRIBUTARY_LAKE__S3__REGION", "eu-west-1"),
                ("TRIBUTARY_BATCH_ROWS", "42"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(svc.kafka.brokers, "kafka:9092");
        assert_eq!(svc.lake.s3.region, "eu-west-1");
        assert_eq!(svc.batch_rows, 42);
    }

    #[test]
    fn clickhouse_compression_is_lz4_unless_set_to_none() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(default)]
        struct Ch {
            clickhouse: ClickHouseSettings,
        }
        let default: Ch = load(None, env(&[])).unwrap();
        assert_eq!(default.clickhouse.compression, ClickHouseCompression::Lz4);
        let none: Ch = load(None, env(&[("TRIBUTARY_CLICKHOUSE__COMPRESSION", "none")])).unwrap();
        assert_eq!(none.clickhouse.compression, ClickHouseCompression::None);
        let err =
            load::<Ch>(None, env(&[("TRIBUTARY_CLICKHOUSE__COMPRESSION", "zstd")])).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load::<Svc>(None, env(&[("TRIBUTARY_KAFKA__BROKER", "typo:9092")])).unwrap_err();
        assert!(err.to_string().contains("broker"), "{err}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let lake = LakeSettings::default();
        let shown = format!(
            "{lake:?} {:?}",
            ClickHouseSettings {
                password: "ch-pass".into(),
                ..ClickHouseSettings::default()
            }
        );
        for secret in ["tributary-secret", ":tributary@", "ch-pass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("postgres://tributary:<redacted>@127.0.0.1:5432/tributary"),
            "{shown}"
        );
        assert_eq!(redact_url("http://127.0.0.1:8123"), "http://127.0.0.1:8123");
        assert_eq!(redact_url("s3://u@host/p"), "s3://u@host/p");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = load::<Svc>(Some(Path::new("/nonexistent/t.toml")), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }));
    }
}
