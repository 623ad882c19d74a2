//! What a marts run reads and writes, as OpenLineage datasets with column lineage — ready for the
//! marts job to hand to [`tributary_lineage::JobRun::start`] / [`tributary_lineage::JobRun::complete`].
//!
//! Inputs: the raw Iceberg tables at the snapshots read (`version`, `tributary_icebergSnapshot`,
//! `inputStatistics`). Outputs: the ClickHouse ranking tables with `outputStatistics` and a
//! `columnLineage` facet: `revenue` is the sum of the current sales' `amount`, `sales` their
//! count, `rank` the order by revenue (ties by id), names come from the master data; which sales
//! count (current version, not deleted or cancelled, in the period) is dataset-wide lineage.

use std::collections::BTreeMap;

use tributary_lineage::event::{Dataset, InputDataset, OutputDataset};
use tributary_lineage::facets::{
    ColumnLineageDatasetFacet, DatasetVersionDatasetFacet, Facet, IcebergSnapshotDatasetFacet,
    InputField, InputStatisticsInputDatasetFacet, OutputStatisticsOutputDatasetFacet,
    Transformation,
};
use tributary_lineage::naming;

/// The raw sale tables (Postgres CDC, partner files, ERP) and their columns.
const PG_SALE: &str = "pg_sale";
const FILE_SALE: &str = "file_sale";
const ERP_SALE: &str = "erp_sale";
const PG_SALESMAN: &str = "pg_salesman";
const PG_CITY: &str = "pg_city";

/// One raw table as a marts run read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRead {
    /// Raw table name (`pg_sale`, `file_sale`, `erp_sale`, `pg_salesman`, `pg_city`).
    pub table: String,
    /// The snapshot read (`None`: the table had none yet).
    pub snapshot_id: Option<i64>,
    /// Rows read from it.
    pub rows: Option<u64>,
}

/// Where the marts job's datasets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MartsDatasets {
    /// Lake warehouse location as the catalog records it (`s3://warehouse` or an absolute path).
    pub warehouse: String,
    /// Iceberg namespace of the raw tables (`raw`).
    pub lake_namespace: String,
    /// ClickHouse HTTP URL (`http://127.0.0.1:8123`).
    pub clickhouse_url: String,
    /// ClickHouse database (`marts`).
    pub database: String,
}

impl MartsDatasets {
    fn raw(&self, table: &str) -> Dataset {
        naming::iceberg_table(&self.warehouse, &self.lake_namespace, table)
    }

    fn field(&self, table: &str, column: &str, how: Transformation) -> InputField {
        let d = self.raw(table);
        InputField {
            namespace: d.namespace,
            name: d.name,
            field: column.to_string(),
            transformations: vec![how],
        }
    }

    /// The inputs, with the snapshot each was read at.
    pub fn inputs(&self, reads: &[TableRead]) -> Vec<InputDataset> {
        reads
            .iter()
            .map(|r| {
                let mut d = self.raw(&r.table);
                if let Some(id) = r.snapshot_id {
                    d.facets.version = Some(Facet::new(DatasetVersionDatasetFacet {
                        dataset_version: id.to_string(),
                    }));
                    d.facets.iceberg_snapshot = Some(Facet::new(IcebergSnapshotDatasetFacet {
                        table: format!("{}.{}", self.lake_namespace, r.table),
                        snapshot_id: id,
                        parent_snapshot_id: None,
                        added_records: None,
                        added_data_files: None,
                    }));
                }
                d.input_with_stats(InputStatisticsInputDatasetFacet {
                    row_count: r.rows,
                    size: None,
                    file_count: None,
                })
            })
            .collect()
    }

    /// Lineage shared by every ranking: revenue, sales, rank, and which sales count.
    fn measures(&self) -> ColumnLineageDatasetFacet {
        let mut facet = ColumnLineageDatasetFacet::default();
        for (table, id_column) in [
            (PG_SALE, "id"),
            (FILE_SALE, "sale_id"),
            (ERP_SALE, "sale_id"),
        ] {
            facet.add(
                "revenue",
                self.field(
                    table,
                    "amount",
                    Transformation::direct("AGGREGATION")
                        .described("sum of amount over the current sales"),
                ),
            );
            facet.add(
                "sales",
                self.field(
                    table,
                    id_column,
                    Transformation::direct("AGGREGATION").described("count of the current sales"),
                ),
            );
            facet.add(
                "rank",
                self.field(
                    table,
                    "amount",
                    Transformation::indirect("SORT").described("ordered by revenue, descending"),
                ),
            );
            // Which version of a sale is current, and whether it still counts.
            facet.dataset.push(
                self.field(
                    table,
                    "op",
                    Transformation::indirect("FILTER")
                        .described("deletes and cancellations remove a sale"),
                ),
            );
            facet.dataset.push(self.field(
                table,
                "sold_at",
                Transformation::indirect("FILTER").described("the period: all time or a UTC month"),
            ));
        }
        for (table, column) in [
            (PG_SALE, "updated_at"),
            (PG_SALE, "source_lsn"),
            (FILE_SALE, "version_major"),
            (FILE_SALE, "version_minor"),
            (ERP_SALE, "version_major"),
            (ERP_SALE, "version_minor"),
        ] {
            facet.dataset.push(self.field(
                table,
                column,
                Transformation::indirect("FILTER").described("the latest version of each sale"),
            ));
        }
        facet
    }

    fn key(&self, facet: &mut ColumnLineageDatasetFacet, output: &str, what: &str) {
        let (sale_columns, master, master_columns): (&[&str], &str, &[&str]) = match what {
            "salesman" => (
                &["salesman_id", "salesman_code"],
                PG_SALESMAN,
                &["id", "code"],
            ),
            _ => (
                &["city_id", "city_name", "city_state"],
                PG_CITY,
                &["id", "name", "state"],
            ),
        };
        facet.add(
            output,
            self.field(PG_SALE, sale_columns[0], Transformation::direct("IDENTITY")),
        );
        for table in [FILE_SALE, ERP_SALE] {
            for c in sale_columns {
                facet.add(
                    output,
                    self.field(
                        table,
                        c,
                        Transformation::direct("IDENTITY")
                            .described("resolved to the master data by id or natural key"),
                    ),
                );
            }
        }
        for c in master_columns {
            facet
                .dataset
                .push(self.field(master, c, Transformation::indirect("JOIN")));
        }
        for table in [PG_SALE, FILE_SALE, ERP_SALE] {
            facet.dataset.push(self.field(
                table,
                sale_columns[0],
                Transformation::indirect("GROUP_BY"),
            ));
        }
        // Ties break by id.
        facet.add(
            "rank",
            self.field(PG_SALE, sale_columns[0], Transformation::indirect("SORT")),
        );
    }

    fn names(&self, facet: &mut ColumnLineageDatasetFacet, what: &str) {
        let columns: &[(&str, &str, &str)] = match what {
            "salesman" => &[("salesman_name", PG_SALESMAN, "name")],
            _ => &[
                ("city_name", PG_CITY, "name"),
                ("city_state", PG_CITY, "state"),
            ],
        };
        for (output, table, column) in columns {
            facet.add(
                output,
                self.field(
                    table,
                    column,
                    Transformation::direct("IDENTITY").described("the current name"),
                ),
            );
        }
    }

    /// The ranking tables with their column lineage and the rows written to each
    /// (`rows_written`: table name → rows; a table absent there gets no statistics).
    pub fn outputs(&self, rows_written: &BTreeMap<String, u64>) -> Vec<OutputDataset> {
        let (host, port) = naming::host_port(&self.clickhouse_url, 8123);
        let rankings: [(&str, &[&str]); 3] = [
            ("city_ranking", &["city"]),
            ("salesman_ranking", &["salesman"]),
            ("city_salesman_ranking", &["city", "salesman"]),
        ];
        rankings
            .iter()
            .map(|(table, keys)| {
                let mut lineage = self.measures();
                for key in *keys {
                    self.key(&mut lineage, &format!("{key}_id"), key);
                    self.names(&mut lineage, key);
                }
                let mut d = naming::clickhouse_table(&host, port, &self.database, table);
                d.facets.column_lineage = Some(Facet::new(lineage));
                d.output_with_stats(OutputStatisticsOutputDatasetFacet {
                    row_count: rows_written.get(*table).copied(),
                    size: None,
                    file_count: None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_lineage::{EventType, JobSpec, Lineage, Processing};

    fn datasets() -> MartsDatasets {
        MartsDatasets {
            warehouse: "s3://warehouse".into(),
            lake_namespace: "raw".into(),
            clickhouse_url: "http://127.0.0.1:8123".into(),
            database: "marts".into(),
        }
    }

    #[test]
    fn a_marts_run_validates_and_revenue_comes_from_every_amount() {
        let m = datasets();
        let reads: Vec<TableRead> = [PG_SALE, FILE_SALE, ERP_SALE, PG_SALESMAN, PG_CITY]
            .iter()
            .zip(1..)
            .map(|(t, i)| TableRead {
                table: t.to_string(),
                snapshot_id: Some(1000 + i),
                rows: Some(10 * i as u64),
            })
            .collect();
        let rows = BTreeMap::from([("salesman_ranking".to_string(), 42)]);
        let run = Lineage::disabled().run(&JobSpec {
            name: "tributary-marts.rankings".into(),
            processing: Processing::Batch,
            job_type: "JOB",
            source_path: "marts/src/job.rs",
            description: String::new(),
        });
        let event = run.event(
            EventType::Complete,
            m.inputs(&reads),
            m.outputs(&rows),
            None,
        );
        let json = serde_json::to_value(&event).unwrap();
        let errors = tributary_lineage::validate::SchemaSet::load()
            .unwrap()
            .errors(&json);
        assert!(errors.is_empty(), "{errors:#?}");

        let salesmen = &json["outputs"][1];
        assert_eq!(salesmen["namespace"], "clickhouse://127.0.0.1:8123");
        assert_eq!(salesmen["name"], "marts.salesman_ranking");
        assert_eq!(salesmen["outputFacets"]["outputStatistics"]["rowCount"], 42);
        let fields = &salesmen["facets"]["columnLineage"]["fields"];
        let revenue: Vec<(&str, &str)> = fields["revenue"]["inputFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["field"].as_str().unwrap()))
            .collect();
        assert_eq!(
            revenue,
            [
                ("raw/pg_sale", "amount"),
                ("raw/file_sale", "amount"),
                ("raw/erp_sale", "amount")
            ]
        );
        assert_eq!(
            fields["salesman_name"]["inputFields"][0]["name"],
            "raw/pg_salesman"
        );
        assert!(fields["rank"].is_object() && fields["sales"].is_object());
        // Every input field of the column lineage names a dataset the run read.
        let read: std::collections::BTreeSet<&str> = json["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        for output in json["outputs"].as_array().unwrap() {
            let facet = &output["facets"]["columnLineage"];
            let all = facet["fields"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|f| f["inputFields"].as_array().unwrap().iter())
                .chain(facet["dataset"].as_array().unwrap().iter());
            for f in all {
                assert!(read.contains(f["name"].as_str().unwrap()), "{f}");
            }
        }
        assert_eq!(
            json["inputs"][0]["facets"]["version"]["datasetVersion"],
            "1001"
        );
    }
}
