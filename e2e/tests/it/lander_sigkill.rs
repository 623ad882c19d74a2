//! The lander is SIGKILLed, repeatedly, while Debezium streams changes; after restarts the raw
//! table holds each change event exactly once — checked offset by offset against Kafka. The
//! changes go to the run's own source database and Debezium connector, so the topic checked
//! holds this run's events only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tributary_common::LakeSettings;
use tributary_e2e::kafka::{offsets_in, watermarks};
use tributary_e2e::{Service, TestPipeline, eventually, require_stack};
use tributary_ingest::{sample, store};
use tributary_raw::catalog::{self, load_table, read_table, snapshot_offsets};
use tributary_raw::offsets::TopicPartition;
use tributary_raw::schema::RawTable;

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_lander_lands_each_change_event_exactly_once() -> Result<()> {
    require_stack();
    // A source of its own: its topic holds this test's changes only, so the offset-by-offset
    // check covers exactly what the test made happen.
    let run = TestPipeline::with_source().await?;
    let namespace = run.namespace();
    let mut env = run.lake_env();
    // Small, frequent commits so the kills land between, during and after commits.
    env.insert("TRIBUTARY_COMMIT_INTERVAL_MS".into(), "200".into());
    env.insert("TRIBUTARY_BATCH_MAX_ROWS".into(), "25".into());
    let mut lander = Service::start("sigkill-lake", "tributary-lake", &[], &env);

    // A steady stream of source changes while the lander is killed and restarted.
    let url = run.source().url();
    let writer = tokio::spawn(async move {
        let db = store::connect(&url).await?;
        for round in 0..40u64 {
            let existing = store::existing(&db).await?;
            let mix = sample::Mix {
                inserts: 8,
                updates: 3,
                deletes: 1,
            };
            store::apply(&db, &sample::plan(&existing, mix, 1_000 + round)).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        anyhow::Ok(())
    });
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        lander.kill_hard();
        tokio::time::sleep(Duration::from_millis(200)).await;
        lander.restart();
    }
    writer.await??;

    // Wait for the lander to reach the end of the topic, then count every offset.
    let sale_topic = run.source().topic("sale");
    let topic = sale_topic.as_str();
    // Debezium may still be publishing the last changes: take the watermarks once they hold still.
    let mut marks = watermarks(topic)?;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = watermarks(topic)?;
        if now == marks {
            break;
        }
        marks = now;
    }
    // The kills are over: catch up with larger commits (one more SIGKILL first), so the wait
    // is not 25 rows a commit.
    lander.kill_hard();
    let mut catch_up = env.clone();
    catch_up.insert("TRIBUTARY_BATCH_MAX_ROWS".into(), "5000".into());
    let mut lander = Service::start("sigkill-lake-catch-up", "tributary-lake", &[], &catch_up);
    let settings = LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: namespace.clone(),
        ..LakeSettings::default()
    };
    let lake = catalog::open(&settings).await?;
    eventually(Duration::from_secs(120), || {
        lander.assert_running();
        let (lake, namespace, marks) = (&lake, &namespace, &marks);
        async move {
            let table = load_table(lake, namespace, RawTable::PgSale).await?;
            let landed = snapshot_offsets(&table)?;
            Ok(marks
                .iter()
                .all(|(p, (_, high))| landed.get(&TopicPartition::new(topic, *p)) >= Some(*high))
                .then_some(()))
        }
    })
    .await
    .with_context(|| {
        format!(
            "the lander never caught up with {marks:?}; see {}",
            lander.log().display()
        )
    })?;

    let mut counts = BTreeMap::new();
    for table in [RawTable::PgSale, RawTable::DeadLetters] {
        let table = load_table(&lake, &namespace, table).await?;
        offsets_in(&read_table(&table, None).await?, topic, &mut counts);
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(
        duplicates.is_empty(),
        "offsets landed more than once: {duplicates:?}"
    );
    let expected: BTreeSet<(i32, i64)> = marks
        .iter()
        .flat_map(|(p, (low, high))| (*low..*high).map(move |o| (*p, o)))
        .collect();
    let landed: BTreeSet<(i32, i64)> = counts.keys().copied().collect();
    let missing: Vec<_> = expected.difference(&landed).take(10).collect();
    ensure!(
        missing.is_empty(),
        "offsets never landed (first 10): {missing:?}"
    );
    ensure!(
        landed == expected,
        "landed offsets beyond the topic's watermarks"
    );
    eprintln!(
        "{} change events on {topic}, each landed exactly once across 4 SIGKILLs",
        expected.len()
    );
    drop(lander);
    run.finish().await
}
