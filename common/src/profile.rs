//! Deployment profiles: the built-in credentials (the local stack's, published in this
//! repository) are accepted only in the development profile.
//!
//! `TRIBUTARY_PROFILE=development` allows them (`dev/app`, the end-to-end tests, the benchmarks
//! and `compose.yaml` set it: their stack is the development one). Unset, or `production`, a
//! service refuses to start while a setting it uses still holds a built-in credential, and names
//! each one, so a deployment cannot run on passwords anyone can read here.
//!
//! What counts, found by comparing a config section with its own defaults
//! ([`builtin_credentials`], pure): a setting whose name says it is a secret (`password`,
//! `secret…`, `…token`) left at a non-empty default; a URL or libpq connection string with a
//! password (`postgres://user:pass@…`, `password=…`) left at its default; and an empty
//! `password` (ClickHouse's `default` user without one).

use serde::Serialize;
use serde_json::Value;

/// The environment variable naming the profile.
pub const PROFILE_ENV: &str = "TRIBUTARY_PROFILE";

/// Where a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A developer's machine or CI: the built-in credentials are fine.
    Development,
    /// Anywhere else (the default): every credential must be set.
    Production,
}

/// A profile that does not exist, or credentials it does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// `TRIBUTARY_PROFILE` is neither `development` nor `production`.
    #[error(
        "TRIBUTARY_PROFILE={0:?} is not a profile: use `development` or `production` (the default)"
    )]
    Unknown(String),
    /// Settings still hold built-in credentials outside the development profile.
    #[error(
        "refusing to start with the built-in development credentials outside the development \
         profile: {}. Set them (config file or TRIBUTARY_* environment; README, Configuration), or \
         set TRIBUTARY_PROFILE=development on a development machine",
        .0.join("; ")
    )]
    BuiltInCredentials(Vec<String>),
}

impl Profile {
    /// The profile a `TRIBUTARY_PROFILE` value names (`None`: unset, production).
    pub fn parse(value: Option<&str>) -> Result<Self, ProfileError> {
        match value.map(str::trim) {
            None | Some("") | Some("production") => Ok(Profile::Production),
            Some("development") => Ok(Profile::Development),
            Some(other) => Err(ProfileError::Unknown(other.to_string())),
        }
    }

    /// The profile of this process (`TRIBUTARY_PROFILE`).
    pub fn from_env() -> Result<Self, ProfileError> {
        Self::parse(std::env::var(PROFILE_ENV).ok().as_deref())
    }

    /// Refuses `found` ([`builtin_credentials`]) unless this is the development profile.
    pub fn allow(self, found: Vec<String>) -> Result<(), ProfileError> {
        if self == Profile::Development || found.is_empty() {
            Ok(())
        } else {
            Err(ProfileError::BuiltInCredentials(found))
        }
    }
}

/// Checks the process's profile against the built-in credentials of `section`, a config
/// section named `name` (`lake`, `clickhouse`, or `""` for a whole config), skipping the
/// settings under the paths in `unused` (e.g. `lake.s3` when the warehouse is a folder).
pub fn check_section<T: Serialize + Default>(
    name: &str,
    section: &T,
    unused: &[&str],
) -> Result<(), ProfileError> {
    let found = builtin_credentials(name, section)
        .into_iter()
        .filter(|finding| {
            !unused
                .iter()
                .any(|skip| finding.starts_with(&format!("`{skip}.")))
        })
        .collect();
    Profile::from_env()?.allow(found)
}

/// The settings of `section` that still hold a built-in credential, each as
/// "`path` <what>", in path order. Pure.
pub fn builtin_credentials<T: Serialize + Default>(name: &str, section: &T) -> Vec<String> {
    let (Ok(actual), Ok(defaults)) = (
        serde_json::to_value(section),
        serde_json::to_value(T::default()),
    ) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(name, &actual, Some(&defaults), &mut found);
    found.sort();
    found
}

fn walk(path: &str, actual: &Value, default: Option<&Value>, found: &mut Vec<String>) {
    match actual {
        Value::Object(fields) => {
            for (key, value) in fields {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(&child, value, default.and_then(|d| d.get(key)), found);
            }
        }
        Value::String(text) => {
            let key = path.rsplit('.').next().unwrap_or(path);
            if let Some(what) = judge(key, text, default.and_then(Value::as_str)) {
                found.push(format!("`{path}` {what}"));
            }
        }
        _ => {}
    }
}

/// Whether the setting `key` holding `value` (its default `default`) is a built-in credential.
fn judge(key: &str, value: &str, default: Option<&str>) -> Option<&'static str> {
    let secret_name = key.contains("password") || key.contains("secret") || key.ends_with("token");
    if key == "password" && value.is_empty() {
        return Some("is empty (no password)");
    }
    if default != Some(value) || value.is_empty() {
        return None;
    }
    if secret_name {
        return Some("is the built-in development secret");
    }
    let url_password = value
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    if url_password || value.contains("password=") {
        return Some("holds the built-in development password");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Section {
        url: String,
        conninfo: String,
        password: String,
        secret_access_key: String,
        write_token: Option<String>,
        plain: String,
        nested: Nested,
    }

    #[derive(Serialize)]
    struct Nested {
        password: String,
        endpoint: String,
    }

    impl Default for Section {
        fn default() -> Self {
            Self {
                url: "postgres://tributary:tributary@127.0.0.1:5432/db".into(),
                conninfo: "host=127.0.0.1 user=tributary password=tributary".into(),
                password: String::new(),
                secret_access_key: "tributary-secret".into(),
                write_token: None,
                plain: "http://127.0.0.1:9000".into(),
                nested: Nested {
                    password: "tributary-erp".into(),
                    endpoint: "http://user@host/".into(),
                },
            }
        }
    }

    #[test]
    fn defaults_are_found_and_named() {
        let found = builtin_credentials("svc", &Section::default());
        assert_eq!(
            found,
            vec![
                "`svc.conninfo` holds the built-in development password",
                "`svc.nested.password` is the built-in development secret",
                "`svc.password` is empty (no password)",
                "`svc.secret_access_key` is the built-in development secret",
                "`svc.url` holds the built-in development password",
            ]
        );
    }

    #[test]
    fn set_credentials_pass() {
        let set = Section {
            url: "postgres://app:s3cr3t@db:5432/db".into(),
            conninfo: "host=db user=app password=s3cr3t".into(),
            password: "ch-pass".into(),
            secret_access_key: "real-secret".into(),
            write_token: Some("0123456789abcdef".into()),
            nested: Nested {
                password: "erp-pass".into(),
                endpoint: "http://user@host/".into(),
            },
            ..Section::default()
        };
        assert!(builtin_credentials("", &set).is_empty());
        // A URL without a password is no credential, default or not.
        let no_password = Section {
            url: "postgres://app@db/db".into(),
            ..set
        };
        assert!(builtin_credentials("", &no_password).is_empty());
    }

    #[test]
    fn only_development_allows_them() {
        let found = builtin_credentials("svc", &Section::default());
        assert_eq!(
            Profile::parse(Some("development")),
            Ok(Profile::Development)
        );
        assert_eq!(Profile::parse(None), Ok(Profile::Production));
        assert_eq!(Profile::parse(Some("production")), Ok(Profile::Production));
        assert!(matches!(
            Profile::parse(Some("dev")),
            Err(ProfileError::Unknown(v)) if v == "dev"
        ));
        assert_eq!(Profile::Development.allow(found.clone()), Ok(()));
        assert_eq!(Profile::Production.allow(Vec::new()), Ok(()));
        let refused = Profile::Production.allow(found).unwrap_err().to_string();
        assert!(
            refused.contains("`svc.url` holds the built-in development password"),
            "{refused}"
        );
        assert!(
            refused.contains("TRIBUTARY_PROFILE=development"),
            "{refused}"
        );
    }
}
