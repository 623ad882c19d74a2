//! Debezium's replication slot keeps up with the cluster's WAL while its source is quiet.
//!
//! A logical slot holds every WAL segment from its confirmed position on, and Debezium confirms a
//! position only when a change of its own database reaches it. The lake's catalog and the marts'
//! state live in other databases of the same cluster, so a quiet source used to pin all the WAL
//! they wrote (hundreds of MB after a soak, growing). The connector's `heartbeat.action.query`
//! writes a row of `debezium_heartbeat` (in the publication, not in the topics) at every
//! heartbeat; this test writes WAL into another database and expects the slot to confirm past it.

use std::time::Duration;

use anyhow::{Context, Result};
use tributary_e2e::{TestPipeline, eventually, postgres, require_stack};

#[tokio::test]
async fn a_quiet_source_lets_its_slot_confirm_the_wal_other_databases_write() -> Result<()> {
    require_stack();
    let run = TestPipeline::with_source().await?;
    let slot = run.source().slot().to_string();

    // About 10 MB of WAL in the catalog's database, none of it in the source's.
    let other = postgres("tributary").await?;
    let table = format!(
        "e2e_wal_{}",
        run.source().prefix().trim_start_matches("e2e_")
    );
    other
        .batch_execute(&format!(
            "CREATE TABLE {table} AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 50000) g; \
             DROP TABLE {table};"
        ))
        .await
        .context("write WAL in the database tributary")?;
    let written: String = other
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);

    // Heartbeats come every 10 s; a slot that does not move stays behind for good.
    let db = run.db();
    eventually(Duration::from_secs(60), || {
        let (slot, written) = (&slot, &written);
        async move {
            let row = db
                .query_one(
                    "SELECT confirmed_flush_lsn >= $2::text::pg_lsn, \
                            pg_wal_lsn_diff($2::text::pg_lsn, confirmed_flush_lsn)::bigint \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[slot, written],
                )
                .await
                .with_context(|| format!("read the slot {slot}"))?;
            let (confirmed, behind): (bool, i64) = (row.get(0), row.get(1));
            // an error keeps polling; the last one is in the failure
            anyhow::ensure!(confirmed, "the slot is {behind} bytes before {written}");
            Ok(Some(()))
        }
    })
    .await
    .with_context(|| format!("the slot {slot} did not confirm {written} within 60 s"))?;
    run.finish().await
}
