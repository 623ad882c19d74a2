//! Validation of events against the vendored official OpenLineage JSON schema (feature
//! `validate`; always on in this crate's tests). Every `$ref` resolves to a file in
//! `lineage/spec/`: nothing is fetched.
//!
//! An event is checked twice over: as a whole against `OpenLineage.json` (which checks each
//! facet only as a generic facet: `_producer`, `_schemaURL`), then each facet against the schema
//! its `_schemaURL` names, found among the vendored files by `$id`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonschema::{Resource, Validator};
use serde_json::Value;

/// The vendored schema folder.
pub fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec")
}

/// Validators for the event schema and every vendored facet schema.
pub struct SchemaSet {
    event: Validator,
    /// facet schema `$id` → (its validator, the facet keys it defines).
    facets: BTreeMap<String, (Validator, Vec<String>)>,
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn schema_id(schema: &Value) -> Result<String, String> {
    schema["$id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "schema without $id".to_string())
}

impl SchemaSet {
    /// Loads `spec/OpenLineage.json`, `spec/facets/*.json` and `spec/tributary/*.json`.
    pub fn load() -> Result<Self, String> {
        let dir = spec_dir();
        let event_schema = read_json(&dir.join("OpenLineage.json"))?;
        let mut files = Vec::new();
        for sub in ["facets", "tributary"] {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
                .map_err(|e| format!("{}: {e}", dir.join(sub).display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            for path in paths {
                files.push(read_json(&path)?);
            }
        }
        let mut resources = vec![(schema_id(&event_schema)?, event_schema.clone())];
        for f in &files {
            resources.push((schema_id(f)?, f.clone()));
        }
        let build = |schema: &Value| -> Result<Validator, String> {
            let mut options = jsonschema::options().should_validate_formats(true);
            for (id, contents) in &resources {
                options =
                    options.with_resource(id.clone(), Resource::from_contents(contents.clone()));
            }
            options
                .build(schema)
                .map_err(|e| format!("schema does not compile: {e}"))
        };
        let event = build(&event_schema)?;
        let mut facets = BTreeMap::new();
        for f in &files {
            let keys = f["properties"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            facets.insert(schema_id(f)?, (build(f)?, keys));
        }
        Ok(Self { event, facets })
    }

    /// Every problem with `event` (empty = valid): against the event schema, then each facet
    /// against its own schema.
    pub fn errors(&self, event: &Value) -> Vec<String> {
        let mut errors: Vec<String> = self
            .event
            .iter_errors(event)
            .map(|e| format!("event: {e} at {}", e.instance_path()))
            .collect();
        let mut check = |key: &str, facet: &Value, at: String| {
            let Some(url) = facet["_schemaURL"].as_str() else {
                errors.push(format!("{at}: facet {key} has no _schemaURL"));
                return;
            };
            let id = url.split('#').next().unwrap_or(url);
            match self.facets.get(id) {
                None => errors.push(format!("{at}: facet {key}: no vendored schema {id}")),
                Some((_, keys)) if !keys.iter().any(|k| k == key) => errors.push(format!(
                    "{at}: facet key {key} is not defined by {id} (defines {keys:?})"
                )),
                Some((validator, _)) => {
                    let wrapped = serde_json::json!({ key: facet });
                    errors.extend(
                        validator
                            .iter_errors(&wrapped)
                            .map(|e| format!("{at}: facet {key}: {e} at {}", e.instance_path())),
                    );
                }
            }
        };
        let mut each = |facets: &Value, at: String| {
            if let Some(map) = facets.as_object() {
                for (key, facet) in map {
                    check(key, facet, at.clone());
                }
            }
        };
        each(&event["run"]["facets"], "run".into());
        each(&event["job"]["facets"], "job".into());
        for side in ["inputs", "outputs"] {
            for (i, d) in event[side].as_array().into_iter().flatten().enumerate() {
                each(&d["facets"], format!("{side}[{i}]"));
                each(&d["inputFacets"], format!("{side}[{i}].inputFacets"));
                each(&d["outputFacets"], format!("{side}[{i}].outputFacets"));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facets::*;
    use crate::transport::{LineageConfig, TransportConfig};
    use crate::{EventType, JobSpec, Lineage, Processing, naming};

    fn job(name: &str) -> JobSpec {
        JobSpec {
            name: name.into(),
            processing: Processing::Batch,
            job_type: "TASK",
            source_path: "lake/src/lineage.rs",
            description: "lands a topic into a table".into(),
        }
    }

    fn assert_valid(schemas: &SchemaSet, event: &crate::RunEvent) {
        let json = serde_json::to_value(event).unwrap();
        let errors = schemas.errors(&json);
        assert!(errors.is_empty(), "{errors:#?}\n{json:#}");
    }

    /// A lander commit as the lake emits it: every facet Tributary uses.
    fn full_run_events() -> Vec<crate::RunEvent> {
        let lineage = Lineage::disabled();
        let parent = lineage.run(&JobSpec {
            name: "tributary-lake".into(),
            processing: Processing::Streaming,
            job_type: "JOB",
            source_path: "lake/src/main.rs",
            description: String::new(),
        });
        let run = parent.child(&job("tributary-lake.raw.pg_sale"));
        let source =
            naming::postgres_table("127.0.0.1", 5432, "salesdb", "public", "sale").with_schema(
                SchemaDatasetFacet::from_columns([("id", "bigint"), ("amount", "numeric(12,2)")]),
            );
        let mut topic = naming::kafka_topic("127.0.0.1:9092", "salesdb.public.sale")
            .input_with_stats(InputStatisticsInputDatasetFacet {
                row_count: Some(10),
                size: Some(2048),
                file_count: None,
            });
        topic.input_facets.kafka_offsets = Some(Facet::new(KafkaOffsetsInputDatasetFacet {
            topic: "salesdb.public.sale".into(),
            partitions: vec![PartitionOffsets {
                partition: 0,
                start_offset: 5,
                end_offset: 15,
            }],
        }));
        let mut table = naming::iceberg_table("s3://warehouse", "raw", "pg_sale")
            .with_schema(SchemaDatasetFacet::from_columns([("sale_id", "long")]));
        table.facets.version = Some(Facet::new(DatasetVersionDatasetFacet {
            dataset_version: "123456789".into(),
        }));
        table.facets.iceberg_snapshot = Some(Facet::new(IcebergSnapshotDatasetFacet {
            table: "raw.pg_sale".into(),
            snapshot_id: 123456789,
            parent_snapshot_id: Some(42),
            added_records: Some(10),
            added_data_files: Some(1),
        }));
        let mut lineage_facet = ColumnLineageDatasetFacet::default();
        lineage_facet.add(
            "amount",
            InputField {
                namespace: source.namespace.clone(),
                name: source.name.clone(),
                field: "amount".into(),
                transformations: vec![Transformation::direct("IDENTITY")],
            },
        );
        lineage_facet.dataset.push(InputField {
            namespace: source.namespace.clone(),
            name: source.name.clone(),
            field: "id".into(),
            transformations: vec![Transformation::indirect("GROUP_BY").described("per sale")],
        });
        table.facets.column_lineage = Some(Facet::new(lineage_facet));
        let output = table.output_with_stats(OutputStatisticsOutputDatasetFacet {
            row_count: Some(10),
            size: Some(4096),
            file_count: Some(1),
        });
        let error = std::io::Error::other("disk full");
        vec![
            parent.event(EventType::Start, vec![], vec![], None),
            run.event(EventType::Start, vec![topic.clone()], vec![], None),
            run.event(EventType::Running, vec![topic.clone()], vec![], None),
            run.event(
                EventType::Complete,
                vec![topic.clone(), source.clone().input()],
                vec![output.clone()],
                None,
            ),
            run.event(EventType::Abort, vec![], vec![], None),
            run.event(
                EventType::Fail,
                vec![topic],
                vec![output],
                Some(ErrorMessageRunFacet::from_error(&error)),
            ),
            parent.event(EventType::Complete, vec![], vec![], None),
        ]
    }

    #[test]
    fn every_event_kind_validates_against_the_official_schema() {
        let schemas = SchemaSet::load().unwrap();
        let events = full_run_events();
        let kinds: std::collections::BTreeSet<String> = events
            .iter()
            .map(|e| format!("{:?}", e.event_type))
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        for event in &events {
            assert_valid(&schemas, event);
        }
    }

    #[test]
    fn the_validator_rejects_what_the_spec_rejects() {
        let schemas = SchemaSet::load().unwrap();
        let good = serde_json::to_value(&full_run_events()[3]).unwrap();
        let mut bad = good.clone();
        bad["eventType"] = "DONE".into();
        assert!(!schemas.errors(&bad).is_empty());
        let mut bad = good.clone();
        bad["run"]["runId"] = "not-a-uuid".into();
        assert!(!schemas.errors(&bad).is_empty(), "runId must be a uuid");
        let mut bad = good.clone();
        bad["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = "ten".into();
        assert!(
            !schemas.errors(&bad).is_empty(),
            "facet checked against its own schema"
        );
        let mut bad = good.clone();
        bad["run"]["facets"]["processing_engine"]
            .as_object_mut()
            .unwrap()
            .remove("version");
        assert!(!schemas.errors(&bad).is_empty());
        let mut bad = good;
        bad["inputs"][0]["inputFacets"]["tributary_kafkaOffsets"]["partitions"][0]
            .as_object_mut()
            .unwrap()
            .remove("endOffset");
        assert!(!schemas.errors(&bad).is_empty(), "custom facet checked too");
    }

    #[test]
    fn the_fail_event_carries_the_error_and_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("commit to raw.pg_sale failed")]
        struct Outer(#[source] std::io::Error);
        let facet = ErrorMessageRunFacet::from_error(&Outer(std::io::Error::other("disk full")));
        assert_eq!(facet.message, "commit to raw.pg_sale failed");
        assert_eq!(facet.stack_trace.as_deref(), Some("caused by: disk full"));
        assert_eq!(facet.programming_language, "RUST");
    }

    #[tokio::test]
    async fn the_file_transport_writes_one_valid_event_per_line_and_a_dead_http_is_only_counted() {
        let path =
            std::env::temp_dir().join(format!("tributary-lineage-{}.jsonl", uuid::Uuid::now_v7()));
        let lineage = Lineage::from_config(LineageConfig {
            namespace: "test".into(),
            transports: vec![
                TransportConfig::File { path: path.clone() },
                // Nothing listens on port 9 (discard): every POST fails, fast.
                TransportConfig::Http {
                    url: "http://127.0.0.1:9".into(),
                    endpoint: "api/v1/lineage".into(),
                    api_key: Some("secret".into()),
                    timeout: std::time::Duration::from_secs(2),
                },
            ],
            journal: None,
        })
        .unwrap();
        let registry = prometheus::Registry::new();
        lineage.register_metrics(&registry).unwrap();
        let run = lineage.run(&job("tributary-ingest.files"));
        run.start(vec![], vec![]);
        run.fail(vec![], vec![], &std::io::Error::other("bad file"));
        lineage.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let schemas = SchemaSet::load().unwrap();
        for line in &lines {
            let event: Value = serde_json::from_str(line).unwrap();
            assert!(
                schemas.errors(&event).is_empty(),
                "{:?}",
                schemas.errors(&event)
            );
            assert_eq!(event["job"]["namespace"], "test");
        }
        let fail: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(fail["eventType"], "FAIL");
        assert_eq!(fail["run"]["facets"]["errorMessage"]["message"], "bad file");
        assert_eq!(lineage.failures(), 2, "both POSTs failed and were counted");
        let exposed = registry.gather();
        assert!(
            exposed
                .iter()
                .any(|m| m.name() == "tributary_lineage_emit_failures_total"),
            "counter registered"
        );
    }
}
