//! The kept-state contract, on the in-memory state and on a real Postgres (the local stack's,
//! `postgres://tributary:tributary@127.0.0.1:5432/tributary` unless `MARTS_STATE_TEST_URL` says
//! otherwise), each Postgres test in a schema of its own. Fails — never skips — when Postgres is
//! not running: run `make test`.

use tributary_marts::MartsError;
use tributary_marts::fold::{
    CityKey, MasterData, Resolved, SaleEvent, SaleKey, SaleOrigin, SaleRecord, SaleRefs,
};
use tributary_marts::state::{Checkpoint, MemoryState, PostgresState, StateStore};

fn record(source: &str, id: &str, order: i64, refs: SaleRefs) -> SaleRecord {
    SaleRecord {
        key: SaleKey {
            source: source.into(),
            sale_id: id.into(),
        },
        order: [order, 1, 2],
        deleted: false,
        refs,
        amount_cents: 12_345,
        sold_at_micros: Some(1_767_225_600_000_000),
        salesman: Resolved::Pending,
        city: Resolved::Id(7),
        origin: SaleOrigin {
            txid: Some(order * 10),
            source_time_micros: Some(1_767_225_600_000_001),
            provenance_json: Some(format!(r#"{{"record":{order}}}"#)),
            kafka_topic: Some(format!("raw.{source}")),
            kafka_partition: Some(3),
            ingest_time_micros: Some(1_767_225_600_000_002),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        },
    }
}

async fn contract(state: &dyn StateStore) {
    assert_eq!(state.checkpoint().await.unwrap(), None);
    let by_code = record(
        "files",
        "acme/1",
        10,
        SaleRefs {
            salesman_code: Some("S9".into()),
            city_id: Some(7),
            ..SaleRefs::default()
        },
    );
    let by_city = record(
        "erp",
        "erp1/2",
        11,
        SaleRefs {
            salesman_id: Some(3),
            city_key: Some(CityKey::new("Campinas", "SP")),
            ..SaleRefs::default()
        },
    );
    let mut gone = record("files", "acme/3", 12, by_code.refs.clone());
    gone.deleted = true;
    let pg = record(
        "pg",
        "4",
        13,
        SaleRefs {
            salesman_id: Some(1),
            city_id: Some(7),
            ..SaleRefs::default()
        },
    );
    let mut first = Checkpoint {
        generation: 1,
        namespace: "raw".into(),
        ..Checkpoint::default()
    };
    first.snapshots.insert("pg_sale".into(), 99);
    state
        .commit(
            None,
            &[by_code.clone(), by_city.clone(), gone.clone(), pg.clone()],
            &first,
        )
        .await
        .unwrap();
    assert_eq!(state.checkpoint().await.unwrap(), Some(first.clone()));

    let keys = [
        by_city.key.clone(),
        pg.key.clone(),
        SaleKey {
            source: "pg".into(),
            sale_id: "404".into(),
        },
    ];
    let mut found = state.sales(&keys).await.unwrap();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(found, vec![by_city.clone(), pg.clone()]);

    // Only live file/ERP sales that name the key without an id.
    let naming = state.sales_naming(&["S9".into()], &[]).await.unwrap();
    assert_eq!(naming, vec![by_code.clone()]);
    let naming = state
        .sales_naming(&[], &[CityKey::new(" campinas", "sp ")])
        .await
        .unwrap();
    assert_eq!(naming, vec![by_city.clone()]);
    assert!(state.sales_naming(&[], &[]).await.unwrap().is_empty());

    // A commit from a stale generation writes nothing.
    let mut moved = by_code.clone();
    moved.salesman = Resolved::Id(9);
    let second = Checkpoint {
        generation: 2,
        ..first.clone()
    };
    let err = state
        .commit(None, std::slice::from_ref(&moved), &second)
        .await
        .unwrap_err();
    assert!(matches!(err, MartsError::StateConflict { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(
        state
            .sales(std::slice::from_ref(&by_code.key))
            .await
            .unwrap(),
        vec![by_code.clone()]
    );
    state
        .commit(Some(1), std::slice::from_ref(&moved), &second)
        .await
        .unwrap();
    assert_eq!(
        state
            .sales(std::slice::from_ref(&by_code.key))
            .await
            .unwrap(),
        vec![moved]
    );
    assert_eq!(state.checkpoint().await.unwrap().unwrap().generation, 2);

    // The tombstone horizon: a delete folded before the cutoff is forgotten, nothing else.
    let hour = chrono::Duration::hours(1);
    assert_eq!(
        state
            .forget_tombstones(chrono::Utc::now() - hour)
            .await
            .unwrap(),
        0
    );
    let kept = |k: SaleKey| async move { state.sales(&[k]).await };
    assert_eq!(kept(gone.key.clone()).await.unwrap(), vec![gone.clone()]);
    assert_eq!(
        state
            .forget_tombstones(chrono::Utc::now() + hour)
            .await
            .unwrap(),
        1
    );
    assert!(kept(gone.key.clone()).await.unwrap().is_empty());
    assert_eq!(kept(pg.key.clone()).await.unwrap(), vec![pg.clone()]);

    state.reset().await.unwrap();
    assert_eq!(state.checkpoint().await.unwrap(), None);
    assert!(state.sales(&keys).await.unwrap().is_empty());
}

#[tokio::test]
async fn memory_state_contract() {
    contract(&MemoryState::new()).await;
}

#[tokio::test]
async fn postgres_state_contract() {
    let url = std::env::var("MARTS_STATE_TEST_URL")
        .unwrap_or_else(|_| "postgres://tributary:tributary@127.0.0.1:5432/tributary".into());
    let schema = format!("marts_state_test_{}", std::process::id());
    let state = PostgresState::new(url, &schema).unwrap();
    contract(&state).await;
    state.reset().await.unwrap();
}

/// A sale event of `id` in city 7 by salesman `salesman`, in January 2026.
fn event(id: &str, order: i64, salesman: i64, deleted: bool) -> SaleEvent {
    SaleEvent {
        key: SaleKey {
            source: "pg".into(),
            sale_id: id.into(),
        },
        order: [order, 0, 0],
        deleted,
        refs: SaleRefs {
            salesman_id: Some(salesman),
            city_id: Some(7),
            ..SaleRefs::default()
        },
        amount: Some(tributary_rankings::money::Money::try_from_cents(10_050).unwrap()),
        sold_at_micros: Some(1_767_225_600_000_000),
        origin: SaleOrigin::default(),
    }
}

/// The cells are stored by change: a commit writes the cells folded since the last one (new,
/// altered, emptied) and the checkpoint reads back every cell as it stands; the version tells
/// which checkpoint is stored without reading it.
async fn cells_contract(state: &dyn StateStore) {
    assert_eq!(state.version().await.unwrap(), None);
    let keys = MasterData::default().index();
    let mut checkpoint = Checkpoint {
        generation: 1,
        epoch: u64::MAX - 7,
        namespace: "raw".into(),
        ..Checkpoint::default()
    };
    let first = checkpoint
        .cells
        .fold_event(None, event("1", 1, 1, false), &keys)
        .unwrap();
    checkpoint
        .cells
        .fold_event(None, event("2", 2, 2, false), &keys)
        .unwrap();
    assert_eq!(
        checkpoint.cells.changed_count(),
        4,
        "all time and January, two salesmen"
    );
    state.commit(None, &[], &checkpoint).await.unwrap();
    checkpoint.cells.stored();
    assert_eq!(state.version().await.unwrap(), Some(checkpoint.version()));
    let read = state.checkpoint().await.unwrap().unwrap();
    assert_eq!(read, checkpoint);
    assert_eq!(read.cells.0.len(), 4);

    // Salesman 1's sale deleted (its cells emptied), salesman 2 sells once more.
    checkpoint
        .cells
        .fold_event(Some(&first), event("1", 3, 1, true), &keys)
        .unwrap();
    checkpoint
        .cells
        .fold_event(None, event("3", 4, 2, false), &keys)
        .unwrap();
    checkpoint.generation = 2;
    assert_eq!(checkpoint.cells.changed_count(), 4);
    state.commit(Some(1), &[], &checkpoint).await.unwrap();
    checkpoint.cells.stored();
    let read = state.checkpoint().await.unwrap().unwrap();
    assert_eq!(read, checkpoint);
    assert_eq!(read.cells.0.len(), 2, "{:?}", read.cells.0);
    assert!(
        read.cells
            .0
            .values()
            .all(|c| c.sales == 2 && c.cents == 20_100)
    );
    assert_eq!(
        read.cells.changed_count(),
        0,
        "read back, nothing is changed"
    );
    state.reset().await.unwrap();
    assert_eq!(state.version().await.unwrap(), None);
}

#[tokio::test]
async fn memory_state_keeps_cells_by_change() {
    cells_contract(&MemoryState::new()).await;
}

#[tokio::test]
async fn postgres_state_keeps_cells_by_change_and_moves_old_documents_cells_into_rows() {
    let url = std::env::var("MARTS_STATE_TEST_URL")
        .unwrap_or_else(|_| "postgres://tributary:tributary@127.0.0.1:5432/tributary".into());
    let schema = format!("marts_state_cells_test_{}", std::process::id());
    let state = PostgresState::new(url.as_str(), &schema).unwrap();
    cells_contract(&state).await;

    // A checkpoint written before cells were rows: its document holds the cells.
    let keys = MasterData::default().index();
    let mut old = Checkpoint {
        generation: 5,
        namespace: "raw".into(),
        ..Checkpoint::default()
    };
    old.cells
        .fold_event(None, event("1", 1, 1, false), &keys)
        .unwrap();
    assert_eq!(
        state.version().await.unwrap(),
        None,
        "connects, creates the schema"
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            &format!("INSERT INTO {schema}.checkpoint (id, generation, body) VALUES (1, 5, $1)"),
            &[&serde_json::to_string(&old).unwrap()],
        )
        .await
        .unwrap();
    let mut read = state.checkpoint().await.unwrap().unwrap();
    assert_eq!(read, old);
    assert_eq!(
        read.cells.changed_count(),
        2,
        "every cell is still to be stored"
    );
    read.generation = 6;
    state.commit(Some(5), &[], &read).await.unwrap();
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.cell"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
    let body: String = client
        .query_one(&format!("SELECT body FROM {schema}.checkpoint"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(!body.contains("\"cells\""), "{body}");
    let again = state.checkpoint().await.unwrap().unwrap();
    assert_eq!(again.cells, old.cells);
    assert_eq!(again.cells.changed_count(), 0);
    state.reset().await.unwrap();
}

/// The provenance reader: a ranking row's live sales by city, salesman and month from the
/// kept state, with the snapshots of the checkpoint they belong to; it answers for exactly
/// those snapshots and for no others, and never creates the state.
#[tokio::test]
async fn a_rows_sales_are_read_by_key_from_the_kept_state_for_its_own_snapshots_only() {
    use tributary_marts::provenance::{RankingKey, provenance_from_state};
    use tributary_marts::state::{KeptSalesReader, RowSales};
    use tributary_rankings::period::{Month, Period};
    use tributary_rankings::{LakeSnapshot, LakeSnapshots};

    let url = std::env::var("MARTS_STATE_TEST_URL")
        .unwrap_or_else(|_| "postgres://tributary:tributary@127.0.0.1:5432/tributary".into());
    let schema = format!("marts_state_reader_{}", std::process::id());
    let reader = KeptSalesReader::new(url.clone(), &schema).unwrap();
    let all_of_city_7 = RowSales {
        city_id: Some(7),
        salesman_id: None,
        sold_between: None,
    };
    assert!(reader.row_sales(all_of_city_7).await.unwrap().is_none());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let made: bool = client
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&schema])
        .await
        .unwrap()
        .get(0);
    assert!(!made, "the reader made the state's schema");

    const FEB_2026: i64 = 1_769_904_000_000_000;
    let sale = |source: &str, id: &str, order: i64, city: i64, salesman: Resolved| SaleRecord {
        city: Resolved::Id(city),
        salesman,
        ..record(source, id, order, SaleRefs::default())
    };
    let pg = sale("pg", "1", 20, 7, Resolved::Id(1));
    let mut file = sale("files", "acme/2", 21, 7, Resolved::Pending);
    file.sold_at_micros = Some(FEB_2026 + 5);
    let erp = sale("erp", "erp1/3", 22, 8, Resolved::Id(1));
    let mut gone = sale("pg", "4", 23, 7, Resolved::Id(1));
    gone.deleted = true;
    let state = PostgresState::new(url, &schema).unwrap();
    let mut checkpoint = Checkpoint {
        generation: 1,
        namespace: "raw".into(),
        ..Checkpoint::default()
    };
    checkpoint.snapshots.insert("pg_sale".into(), 99);
    checkpoint.snapshots.insert("file_sale".into(), 7);
    state
        .commit(
            None,
            &[pg.clone(), file.clone(), erp.clone(), gone],
            &checkpoint,
        )
        .await
        .unwrap();

    let ids = |row: RowSales| {
        let reader = &reader;
        async move {
            let (snapshots, sales) = reader.row_sales(row).await.unwrap().unwrap();
            let mut ids: Vec<String> = sales.into_iter().map(|s| s.key.sale_id).collect();
            ids.sort();
            (snapshots, ids)
        }
    };
    let (snapshots, city_7) = ids(all_of_city_7).await;
    assert_eq!(snapshots, checkpoint.snapshots);
    assert_eq!(
        city_7,
        ["1", "acme/2"],
        "live sales of city 7, the deleted one not"
    );
    let january = Some((FEB_2026 - 31 * 86_400_000_000, FEB_2026));
    let city_7_january = RowSales {
        sold_between: january,
        ..all_of_city_7
    };
    assert_eq!(ids(city_7_january).await.1, ["1"]);
    let salesman_1 = RowSales {
        city_id: None,
        salesman_id: Some(1),
        sold_between: None,
    };
    assert_eq!(ids(salesman_1).await.1, ["1", "erp1/3"]);
    let city_8_salesman_1 = RowSales {
        city_id: Some(8),
        ..salesman_1
    };
    assert_eq!(ids(city_8_salesman_1).await.1, ["erp1/3"]);

    // As provenance records: only for the checkpoint's own snapshots.
    let published = |pg_sale: i64| {
        LakeSnapshots(vec![
            LakeSnapshot {
                table: "pg_sale".into(),
                snapshot_id: Some(pg_sale),
            },
            LakeSnapshot {
                table: "pg_salesman".into(),
                snapshot_id: None,
            },
            LakeSnapshot {
                table: "file_sale".into(),
                snapshot_id: Some(7),
            },
        ])
    };
    let january = Period::Month(Month::new(2026, 1).unwrap());
    let key = RankingKey::Salesman { salesman_id: 1 };
    let found = provenance_from_state(&reader, &published(99), january, key)
        .await
        .unwrap()
        .expect("the state is folded to these snapshots");
    assert_eq!(found.snapshots, published(99));
    let pg_record = found.records.iter().find(|r| r.source == "pg").unwrap();
    assert_eq!(
        (
            pg_record.source_lsn,
            pg_record.kafka_offset,
            pg_record.version_major
        ),
        (Some(20), 1, None),
        "a Postgres sale's order is (LSN, offset)"
    );
    assert_eq!(pg_record.kafka_topic, "raw.pg");
    assert_eq!(pg_record.kafka_partition, 3);
    assert_eq!(pg_record.source_txid, Some(200));
    let erp_record = found.records.iter().find(|r| r.source == "erp").unwrap();
    assert_eq!(
        (
            erp_record.version_major,
            erp_record.version_minor,
            erp_record.kafka_offset
        ),
        (Some(22), Some(1), 2),
        "an event sale's order is (major, minor, offset)"
    );
    assert_eq!(
        erp_record.provenance_json.as_deref(),
        Some(r#"{"record":22}"#)
    );
    assert_eq!(found.revenue().unwrap().cents(), 2 * 12_345);
    assert!(
        provenance_from_state(&reader, &published(98), january, key)
            .await
            .unwrap()
            .is_none(),
        "another publication's snapshots: the state cannot answer for it"
    );
    state.reset().await.unwrap();
}
