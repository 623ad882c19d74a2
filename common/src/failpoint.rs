//! Deterministic crash points, for tests: the process dies at an exact step (after a Parquet
//! write and before the catalog commit, inside a Kafka transaction, …) so a test can check that
//! a restart neither loses nor duplicates anything.
//!
//! Compiled in only with this crate's `failpoints` feature, which only the end-to-end test
//! crate (`tributary-e2e`) turns on: a release build of a service (`cargo build -p …`, the
//! Dockerfile) has none, and every call here is an empty inline function. With the feature,
//! they are armed by the `FAILPOINTS` environment variable (the `fail` crate's syntax:
//! `name=return`, several joined by `;`), read once by [`arm_from_env`] at start-up (the
//! services call it from `telemetry::init`), and only in the development profile: a process
//! that finds `FAILPOINTS` set in any other profile refuses to start.
//!
//! Every point is named in [`POINTS`]; the e2e crash-point test arms each in turn.

/// Every crash point, `(name, where)`.
pub const POINTS: &[(&str, &str)] = &[
    (
        LANDER_AFTER_DATA_FILES,
        "lander: a flush's Parquet files are written, the catalog commit not made",
    ),
    (
        LANDER_AFTER_COMMIT,
        "lander: a table's commit is in the catalog, the lander has not seen the answer",
    ),
    (
        LANDER_AFTER_DEAD_LETTERS,
        "lander: the flush's dead letters are committed, its change tables not",
    ),
    (
        MARTS_AFTER_PUBLISH,
        "marts: the run's publication is written, its state (checkpoint) not committed",
    ),
    (
        INGEST_IN_TRANSACTION,
        "ingestor: a batch's records are sent inside a Kafka transaction, not committed",
    ),
];

/// See [`POINTS`].
pub const LANDER_AFTER_DATA_FILES: &str = "lander-after-data-files";
/// See [`POINTS`].
pub const LANDER_AFTER_COMMIT: &str = "lander-after-commit";
/// See [`POINTS`].
pub const LANDER_AFTER_DEAD_LETTERS: &str = "lander-after-dead-letters";
/// See [`POINTS`].
pub const MARTS_AFTER_PUBLISH: &str = "marts-after-publish";
/// See [`POINTS`].
pub const INGEST_IN_TRANSACTION: &str = "ingest-in-transaction";

/// The environment variable arming crash points.
pub const FAILPOINTS_ENV: &str = "FAILPOINTS";

/// Arms the crash points `FAILPOINTS` names, for the life of the process. Refuses (`Err`, the
/// caller exits) when `FAILPOINTS` is set outside the development profile, or names a point
/// that does not exist; without the `failpoints` feature, refuses any `FAILPOINTS` at all
/// rather than silently ignoring it.
pub fn arm_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var(FAILPOINTS_ENV) else {
        return Ok(());
    };
    if spec.trim().is_empty() {
        return Ok(());
    }
    check(&spec, crate::profile::Profile::from_env().ok())?;
    arm(&spec)
}

/// Whether `spec` may arm crash points in `profile`. Pure.
fn check(spec: &str, profile: Option<crate::profile::Profile>) -> Result<(), String> {
    if profile != Some(crate::profile::Profile::Development) {
        return Err(format!(
            "{FAILPOINTS_ENV}={spec:?} is set outside the development profile: crash points are for tests"
        ));
    }
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let name = entry.split_once('=').map_or(entry, |(name, _)| name).trim();
        if !POINTS.iter().any(|(known, _)| *known == name) {
            return Err(format!(
                "{FAILPOINTS_ENV}: no crash point {name:?}; they are {}",
                POINTS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(feature = "failpoints")]
fn arm(_spec: &str) -> Result<(), String> {
    // The scenario reads FAILPOINTS itself; dropping it would disarm every point.
    std::mem::forget(fail::FailScenario::setup());
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
fn arm(spec: &str) -> Result<(), String> {
    Err(format!(
        "{FAILPOINTS_ENV}={spec:?} is set, but this build has no crash points (the `failpoints` feature of tributary-common)"
    ))
}

/// A crash point: when `name` is armed, the process aborts here (SIGABRT, no destructor, no
/// flush), as a power cut would stop it.
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("crash point {name}: aborting the process");
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn only_known_points_and_only_in_development() {
        let spec = format!("{LANDER_AFTER_COMMIT}=return;{INGEST_IN_TRANSACTION}=return");
        assert_eq!(check(&spec, Some(Profile::Development)), Ok(()));
        assert!(check(&spec, Some(Profile::Production)).is_err());
        assert!(check(&spec, None).is_err());
        let unknown = check("lander-after-lunch=return", Some(Profile::Development));
        assert!(unknown.unwrap_err().contains(LANDER_AFTER_DATA_FILES));
    }

    #[test]
    fn an_unarmed_point_does_nothing() {
        crash_point(LANDER_AFTER_DATA_FILES);
    }
}
