//! The kept-state contract, on the in-memory state and on a real Postgres (the local stack's,
//! `postgres://tributary:tributary@127.0.0.1:5432/tributary` unless `MARTS_STATE_TEST_URL` says
//! otherwise), each Postgres test in a schema of its own. Fails — never skips — when Postgres is
//! not running: run `make test`.

use tributary_marts::MartsError;
use tributary_marts::fold::{CityKey, Resolved, SaleKey, SaleRecord, SaleRefs};
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
