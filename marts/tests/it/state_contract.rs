//! The kept-state contract, on the in-memory state and on a real Postgres (the local stack's,
//! `postgres://tributary:tributary@127.0.0.1:5432/tributary` unless `MARTS_STATE_TEST_URL` says
//! otherwise), each Postgres test in a schema of its own. Fails — never skips — when Postgres is
//! not running: run `make test`.

use tributary_marts::MartsError;
use tributary_marts::fold::{
    CityKey, MasterData, Resolved, SaleEvent, SaleKey, SaleRecord, SaleRefs,
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
