//! `compose.yaml` runs the same stack as `dev/up` from official images. No Docker engine runs
//! here, so the file is checked statically: always by a structural check of our own, and also by
//! `docker compose config` when a compose client is installed (it validates without an engine).

use std::process::Command;

use tributary_e2e::repo_root;

fn compose_client_present() -> bool {
    Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn compose_yaml_runs_the_same_stack_and_our_services() {
    let text =
        std::fs::read_to_string(repo_root().join("compose.yaml")).expect("read compose.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("compose.yaml is valid YAML");
    let services = doc["services"]
        .as_mapping()
        .expect("compose.yaml has services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for wanted in [
        "postgres",
        "kafka",
        "connect",
        "minio",
        "clickhouse",
        "lake",
        "marts",
        "api",
        "erp-sim",
        "ingest-erp",
        "ingest-files",
        "prometheus",
    ] {
        assert!(
            names.iter().any(|n| n.contains(wanted)),
            "compose.yaml has no {wanted} service (has {names:?})"
        );
    }
    for shared in [
        "ingest/debezium/salesdb-connector.json",
        "ingest/sql/schema.sql",
        "minio/",
    ] {
        assert!(
            text.contains(shared),
            "compose.yaml does not use {shared}, which the local stack uses: keep the two in step"
        );
    }
    for (name, service) in services {
        let has_source = service.get("image").is_some() || service.get("build").is_some();
        assert!(has_source, "service {name:?} has neither image nor build");
    }

    if compose_client_present() {
        let out = Command::new("docker")
            .args(["compose", "-f", "compose.yaml", "config", "-q"])
            .current_dir(repo_root())
            .output()
            .expect("run docker compose config");
        assert!(
            out.status.success(),
            "docker compose config rejected compose.yaml:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("no `docker compose` client here: compose.yaml checked structurally only");
    }
}
