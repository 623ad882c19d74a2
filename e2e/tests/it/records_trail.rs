//! Where a run's records stand, for the oracle tests' failure messages: which stage holds what
//! the API does not show yet (Kafka, the lake's ledger, a service that is not ready).

use std::time::Duration;

use tributary_e2e::kafka::committed_offsets;
use tributary_e2e::{TestPipeline, get_json};

use crate::disruption::Probe;

/// The run's topics: the source's three Debezium topics, the ingestors' sales and dead letters.
pub(crate) fn run_topics(run: &TestPipeline) -> [String; 7] {
    let source = run.source();
    [
        source.topic("sale"),
        source.topic("salesman"),
        source.topic("city"),
        run.topic("files.sales"),
        run.topic("files.dead"),
        run.topic("erp.sales"),
        run.topic("erp.dead"),
    ]
}

/// For a failure message, where a run's records stand when the API does not match the
/// sources: per partition of each topic, Kafka's high watermark against what the lake's ledger
/// consumed (a partition behind names whether a `read_committed` reader gets to its end, i.e.
/// whether an open transaction holds it); the sources' numbering as the ledger counts it; and
/// which services are not ready now. Each part says so when it cannot be read.
pub(crate) async fn where_the_records_are(
    run: &TestPipeline,
    http: &reqwest::Client,
    base: &str,
    probes: &[Probe],
) -> String {
    let ledger = get_json(http, &format!("{base}/v1/ledger")).await;
    let no_partitions = Vec::new();
    let partitions = ledger
        .as_ref()
        .ok()
        .and_then(|l| l["partitions"].as_array())
        .unwrap_or(&no_partitions);
    let mut lines = Vec::new();
    for topic in run_topics(run) {
        let watched = topic.clone();
        let marks = match blocking(move || tributary_e2e::kafka::watermarks(&watched)).await {
            Ok(marks) => marks,
            Err(e) => {
                lines.push(format!("{topic}: no watermarks ({e:#})"));
                continue;
            }
        };
        for (partition, (_, high)) in marks {
            let landed = partitions
                .iter()
                .find(|p| p["topic"] == topic.as_str() && p["partition"] == partition);
            let next = landed.and_then(|p| p["next_offset"].as_i64());
            let mut line = format!(
                "{topic}/{partition}: Kafka's high watermark {high}, the ledger's next offset {next:?}"
            );
            if next.is_none_or(|next| next < high) {
                let read = topic.clone();
                line.push_str(&match blocking(move || committed_offsets(&read)).await {
                    Ok(offsets) => format!(
                        "; read_committed reads to the end, its last record at {:?}",
                        offsets.iter().rfind(|(p, _)| *p == partition)
                    ),
                    Err(e) => format!("; read_committed: {e:#}"),
                });
            }
            lines.push(line);
        }
    }
    match &ledger {
        Ok(ledger) => {
            for entry in ledger["files"]
                .as_array()
                .into_iter()
                .chain(ledger["erp"].as_array())
                .flatten()
            {
                lines.push(format!("source numbering: {entry}"));
            }
        }
        Err(e) => lines.push(format!("no ledger: {e:#}")),
    }
    for p in probes {
        let readyz = http
            .get(format!("{}/readyz", p.base))
            .timeout(Duration::from_secs(5));
        let readiness = match readyz.send().await {
            Ok(response) => format!(
                "{} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ),
            Err(e) => format!("no answer: {e}"),
        };
        lines.push(format!("{} /readyz now: {readiness}", p.service));
    }
    format!("records:\n{}", lines.join("\n"))
}

/// `read` on a blocking thread (the e2e Kafka helpers block the thread they run on); its error or
/// its panic as one error.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(read).await?
}
