//! The API binary outside the development profile: it refuses the built-in credentials, names
//! each one, and starts once they are set. Runs `tributary-api` itself (no services needed: it
//! stops before connecting anywhere, or serves without ClickHouse until killed).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn api() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary-api"));
    // Only what this test sets: no TRIBUTARY_* from the caller's environment.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TRIBUTARY_")) {
        command.env_remove(key);
    }
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("OTEL_TRACES_EXPORTER", "none")
        .stdin(Stdio::null());
    command
}

#[test]
fn built_in_credentials_are_refused_outside_development() {
    for profile in [None, Some("production")] {
        let mut command = api();
        if let Some(profile) = profile {
            command.env("TRIBUTARY_PROFILE", profile);
        }
        let out = command.output().expect("run tributary-api");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{profile:?}: started: {stderr}");
        for named in [
            "`clickhouse.password` is empty (no password)",
            "`lake.catalog_uri` holds the built-in development password",
            "`lineage.url` holds the built-in development password",
            "`health.source_url` holds the built-in development password",
            "TRIBUTARY_PROFILE=development",
        ] {
            assert!(
                stderr.contains(named),
                "{profile:?}: {named} not in: {stderr}"
            );
        }
        // The warehouse is a local folder by default: the object store's keys are not asked for.
        assert!(!stderr.contains("lake.s3"), "{stderr}");
    }

    let out = api()
        .env("TRIBUTARY_PROFILE", "staging")
        .output()
        .expect("run tributary-api");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("TRIBUTARY_PROFILE=\"staging\" is not a profile"),
        "{stderr}"
    );
}

#[test]
fn set_credentials_start_the_api() {
    let mut child = api()
        .env("TRIBUTARY_CLICKHOUSE__USER", "reader")
        .env("TRIBUTARY_CLICKHOUSE__PASSWORD", "a-password")
        .env(
            "TRIBUTARY_LAKE__CATALOG_URI",
            "postgres://app:elsewhere@127.0.0.1:1/catalog",
        )
        .env(
            "TRIBUTARY_LINEAGE__URL",
            "postgres://app:elsewhere@127.0.0.1:1/lineage",
        )
        .env("TRIBUTARY_HEALTH__SOURCE_URL", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tributary-api");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("api listening") => break true,
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
                        .unwrap();
                    panic!(
                        "tributary-api exited ({status}): {err}\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "no `api listening` in 60 s: {}", seen.join("\n"));
}
