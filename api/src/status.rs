//! `GET /status`: one server-rendered HTML page (no script) that shows at a glance whether
//! data flows — the pipeline's stages, the marts' last runs, the latest publication and its
//! age, how far each source reaches in it, the raw tables' last commits, the dead letters and
//! the crashes of our services (from the lineage store).
//!
//! [`gather`] reads everything (ClickHouse and the lake; each part that fails is shown as
//! unavailable rather than failing the page), [`render`] is a pure function of what was read,
//! so the page is unit-tested without services. Elements a test or a script may look for
//! carry ids (`publication-id`, `dead-letters-total`, …) and `data-*` attributes.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use poem::web::Html;
use tributary_rankings::schema::{MartRunRow, PublicationRow, PublicationSourceRow};
use tributary_rankings::{Money, RankingQueries};
use tributary_raw::snapshots::TableSnapshots;

use crate::backlog::{self, HealthSettings, Level, SlotState, Watch};
use crate::dead_letters::{self, Count};
use crate::lake::Lake;
use crate::lineage::graph::{Crashes, JobId};
use crate::lineage::store::LineageStore;
use tributary_common::health::CheckReport;

/// Marts runs shown.
const RUNS_SHOWN: u32 = 10;
/// A publication older than this is shown as stale (the marts job runs every few seconds to
/// minutes; an hour without a new publication while sources change means it is stuck).
const STALE_AFTER_SECONDS: i64 = 3600;
/// How long the page waits for the source Postgres.
const SLOTS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long the page waits for the lander's `/readyz`.
const LANDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Everything the page shows; `Err` holds why a part could not be read.
#[derive(Debug, Clone)]
pub struct StatusView {
    /// When the page was made.
    pub now: DateTime<Utc>,
    /// ClickHouse answered a ping.
    pub store_ping: Result<(), String>,
    /// The latest publication, if any.
    pub publication: Result<Option<PublicationRow>, String>,
    /// Per source, how far the latest publication reaches.
    pub sources: Result<Vec<PublicationSourceRow>, String>,
    /// The latest marts runs, newest first.
    pub runs: Result<Vec<MartRunRow>, String>,
    /// Every raw table's snapshots.
    pub tables: Result<Vec<TableSnapshots>, String>,
    /// Dead letters per source and kind.
    pub dead_letters: Result<Vec<Count>, String>,
    /// The source Postgres's replication slots; `None` when not watched.
    pub slots: Option<Result<Vec<SlotState>, String>>,
    /// The lander's backlog check (records waiting in Kafka); `None` when not watched.
    pub lander_backlog: Option<Result<CheckReport, String>>,
    /// Crashes of our services' processes (from the lineage store, within its retention);
    /// `None` without a lineage store.
    pub crashes: Option<Result<Vec<(JobId, Crashes)>, String>>,
    /// The thresholds the stages are judged by.
    pub health: HealthSettings,
}

/// Reads what the page shows.
pub async fn gather(
    store: &dyn RankingQueries,
    lake: Option<&Lake>,
    health: Option<&Watch>,
    lineage: Option<&LineageStore>,
    now: DateTime<Utc>,
) -> StatusView {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let store_ping = store.ping().await.map_err(|e| text(&e));
    let publication = store.latest_publication().await.map_err(|e| text(&e));
    let sources = match &publication {
        Ok(Some(p)) => store.sources(&p.publication_id).await.map_err(|e| text(&e)),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e.clone()),
    };
    let runs = store.runs(RUNS_SHOWN).await.map_err(|e| text(&e));
    let (tables, dead_letters) = match lake {
        None => {
            let none = "no lake is configured".to_string();
            (Err(none.clone()), Err(none))
        }
        Some(lake) => (
            lake.snapshots().await.map_err(|e| text(&e)),
            lake.dead_letters()
                .await
                .map(|d| dead_letters::counts(&d))
                .map_err(|e| text(&e)),
        ),
    };
    // Both outside dependencies at once: the page waits for the slower, not the sum.
    let slots = async {
        match health {
            Some(h) => h.slots(SLOTS_TIMEOUT).await,
            None => None,
        }
    };
    let lander_backlog = async {
        match health
            .map(|h| &h.settings)
            .filter(|h| !h.lander_url.is_empty())
        {
            Some(h) => Some(backlog::lander_backlog(&h.lander_url, LANDER_TIMEOUT).await),
            None => None,
        }
    };
    let crashes = async {
        match lineage {
            Some(l) => Some(
                l.read(|index| Ok(index.crashes()))
                    .await
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        }
    };
    let (slots, lander_backlog, crashes) = tokio::join!(slots, lander_backlog, crashes);
    StatusView {
        now,
        store_ping,
        publication,
        sources,
        runs,
        tables,
        dead_letters,
        slots,
        lander_backlog,
        crashes,
        health: health.map(|h| h.settings.clone()).unwrap_or_default(),
    }
}

/// The page over `store` and `lake`.
pub async fn page(
    store: &dyn RankingQueries,
    lake: Option<&Lake>,
    health: Option<&Watch>,
    lineage: Option<&LineageStore>,
    now: DateTime<Utc>,
) -> Html<String> {
    Html(render(&gather(store, lake, health, lineage, now).await))
}

/// HTML-escapes text for element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `42 s`, `3 min`, `2 h 5 min`, `4 d 1 h`: an age a person reads at a glance.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    human_age((now - t).num_seconds())
}

/// A stage of the pipeline strip: `ok`, `warn`, `down` or `unknown`, and one line.
struct Stage {
    name: &'static str,
    state: &'static str,
    detail: String,
}

fn stages(v: &StatusView) -> Vec<Stage> {
    let newest_commit = v.tables.as_ref().ok().and_then(|tables| {
        tables
            .iter()
            .filter(|t| t.table != tributary_common::names::TABLE_DEAD_LETTERS)
            .flat_map(|t| t.snapshots.iter().map(|s| s.committed_at))
            .max()
    });
    let sources = match &v.sources {
        Ok(rows) if !rows.is_empty() => {
            // The stalest source sets the level: a source that falls behind shows, even while
            // the others (and every commit) go on.
            let stalest = rows
                .iter()
                .filter(|r| r.newest_event_at.timestamp() > 0)
                .map(|r| (r.source.as_str(), (v.now - r.newest_event_at).num_seconds()))
                .max_by_key(|(_, age_s)| *age_s);
            match stalest {
                Some((source, age_s)) => Stage {
                    name: "sources",
                    state: backlog::judge_age(age_s, &v.health).as_str(),
                    detail: format!(
                        "{} sources; stalest {source}, newest event {} old",
                        rows.len(),
                        human_age(age_s)
                    ),
                },
                None => Stage {
                    name: "sources",
                    state: "unknown",
                    detail: format!("{} sources, no event time yet", rows.len()),
                },
            }
        }
        Ok(_) => Stage {
            name: "sources",
            state: "unknown",
            detail: "no per-source watermarks published yet".into(),
        },
        Err(_) => Stage {
            name: "sources",
            state: "unknown",
            detail: "watermarks unreadable".into(),
        },
    };
    let cdc = match &v.slots {
        None => Stage {
            name: "CDC",
            state: "unknown",
            detail: "replication slots not watched".into(),
        },
        Some(Err(_)) => Stage {
            name: "CDC",
            state: "unknown",
            detail: "source Postgres unreadable".into(),
        },
        Some(Ok(slots)) if slots.is_empty() => Stage {
            name: "CDC",
            state: "warn",
            detail: "no replication slot: Debezium has not connected".into(),
        },
        Some(Ok(slots)) => {
            let worst = slots
                .iter()
                .map(|s| (backlog::judge_slot(s, &v.health), s))
                .max_by_key(|(level, s)| (*level, s.retained_bytes))
                .expect("not empty");
            Stage {
                name: "CDC",
                state: worst.0.as_str(),
                detail: format!(
                    "slot {} holds {} of WAL{}",
                    worst.1.name,
                    backlog::human_bytes(worst.1.retained_bytes),
                    if worst.1.active { "" } else { ", no reader" }
                ),
            }
        }
    };
    let lake_stage = |name| match (&v.tables, newest_commit) {
        (Ok(_), Some(t)) => Stage {
            name,
            state: "ok",
            detail: format!("last commit {} ago", age(v.now, t)),
        },
        (Ok(_), None) => Stage {
            name,
            state: "warn",
            detail: "nothing landed yet".into(),
        },
        (Err(_), _) => Stage {
            name,
            state: "down",
            detail: "lake unreadable".into(),
        },
    };
    let marts = match v.runs.as_ref().map(|r| r.first()) {
        Ok(Some(run)) => Stage {
            name: "marts",
            state: if run.status == "failed" { "down" } else { "ok" },
            detail: format!(
                "last run {} {} ago",
                run.status,
                age(v.now, run.finished_at)
            ),
        },
        Ok(None) => Stage {
            name: "marts",
            state: "warn",
            detail: "no run yet".into(),
        },
        Err(_) => Stage {
            name: "marts",
            state: "unknown",
            detail: "runs unreadable".into(),
        },
    };
    let clickhouse = match (&v.store_ping, &v.publication) {
        (Ok(()), Ok(Some(p))) => Stage {
            name: "ClickHouse",
            state: if (v.now - p.computed_at).num_seconds() > STALE_AFTER_SECONDS {
                "warn"
            } else {
                "ok"
            },
            detail: format!("publication {} old", age(v.now, p.computed_at)),
        },
        (Ok(()), _) => Stage {
            name: "ClickHouse",
            state: "warn",
            detail: "nothing published yet".into(),
        },
        (Err(_), _) => Stage {
            name: "ClickHouse",
            state: "down",
            detail: "not answering".into(),
        },
    };
    let kafka = match &v.lander_backlog {
        None => Stage {
            name: "Kafka",
            state: "unknown",
            detail: "backlog not watched ([health] lander_url)".into(),
        },
        Some(Err(why)) => Stage {
            name: "Kafka",
            state: "unknown",
            detail: why.clone(),
        },
        // The lander judges its own backlog (records waiting, time since its last commit
        // with records waiting): behind is amber; the lander stage turns red if it stops.
        Some(Ok(check)) => Stage {
            name: "Kafka",
            state: if check.ok { "ok" } else { "warn" },
            detail: check.detail.clone(),
        },
    };
    vec![
        sources,
        cdc,
        kafka,
        lake_stage("lander"),
        lake_stage("Iceberg"),
        marts,
        clickhouse,
        Stage {
            name: "API",
            state: "ok",
            detail: "serving this page".into(),
        },
    ]
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}\
.muted{color:#667085}.pipeline{display:flex;gap:6px;align-items:stretch;flex-wrap:wrap}\
.stage{flex:1;min-width:120px;padding:8px 10px;border-radius:8px;background:#fff;border:2px solid #d0d5dd}\
.stage b{display:block;font-size:14px}.stage span{font-size:12px;color:#475467}\
.arrow{align-self:center;color:#98a2b3}.ok{border-color:#12b76a}.warn{border-color:#f79009}\
.down{border-color:#f04438;background:#fef3f2}.unknown{border-color:#d0d5dd}\
table{border-collapse:collapse;background:#fff;font-size:13px;min-width:50%}\
th,td{padding:4px 10px;border-bottom:1px solid #eaecf0;text-align:left}th{background:#f2f4f7}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.err{color:#b42318}\
.grid{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:0 24px}.grid table{width:100%}\
.id{word-break:break-all;font-family:ui-monospace,monospace;font-size:12px}.badge{padding:1px 6px;border-radius:4px}\
.published{background:#d1fadf}.unchanged{background:#eaecf0}.failed{background:#fee4e2}";

fn unavailable(out: &mut String, what: &str, why: &str) {
    let _ = write!(
        out,
        "<p class=\"err\">{} unavailable: {}</p>",
        esc(what),
        esc(why)
    );
}

/// Crashes of our services' processes, as the lineage store saw the next process close the runs
/// a killed one left open (lineage/src/journal.rs): a crash loop shows here, not only in alerts.
fn render_crashes(o: &mut String, v: &StatusView) {
    let Some(crashes) = &v.crashes else { return };
    o.push_str("<h2>Crashes</h2>");
    match crashes {
        Ok(jobs) if jobs.is_empty() => o.push_str(
            "<p class=\"muted\" id=\"crashes\" data-none=\"true\">no process of ours crashed within the lineage retention</p>",
        ),
        Ok(jobs) => {
            o.push_str(
                "<table id=\"crashes\"><tr><th>service (job)</th><th>crashes</th><th>last</th></tr>",
            );
            for (job, c) in jobs {
                let recent = (v.now - c.last_at).num_seconds() < 900;
                let _ = write!(
                    o,
                    "<tr class=\"crash\" data-job=\"{}\" data-state=\"{}\"><td>{}</td><td class=\"n count\">{}</td>\
                     <td>{} ({} ago)</td></tr>",
                    esc(&job.name),
                    if recent { "warn" } else { "ok" },
                    esc(&job.name),
                    c.count,
                    time(c.last_at),
                    age(v.now, c.last_at)
                );
            }
            o.push_str("</table>");
        }
        Err(e) => unavailable(o, "crashes (lineage store)", e),
    }
}

/// The page. Pure.
pub fn render(v: &StatusView) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Tributary status</title><style>{STYLE}</style></head><body>\
         <h1>Tributary status</h1><p class=\"muted\">at <span id=\"generated-at\">{}</span> \
         · JSON: <a href=\"/docs\">/docs</a> · metrics: <a href=\"/metrics\">/metrics</a></p>",
        time(v.now)
    );

    o.push_str("<h2>Pipeline</h2><div class=\"pipeline\" id=\"pipeline\">");
    for (i, s) in stages(v).iter().enumerate() {
        if i > 0 {
            o.push_str("<div class=\"arrow\">→</div>");
        }
        let _ = write!(
            o,
            "<div class=\"stage {}\" data-stage=\"{}\" data-state=\"{}\"><b>{}</b><span>{}</span></div>",
            s.state,
            esc(s.name),
            s.state,
            esc(s.name),
            esc(&s.detail)
        );
    }
    o.push_str("</div><div class=\"grid\"><div>");

    o.push_str("<h2>Latest publication</h2>");
    match &v.publication {
        Ok(Some(p)) => {
            let _ = write!(
                o,
                "<table id=\"publication\"><tr><th>id</th><td id=\"publication-id\" class=\"id\">{}</td></tr>\
                 <tr><th>computed at</th><td>{}</td></tr>\
                 <tr><th>age</th><td id=\"publication-age\" data-seconds=\"{}\">{}</td></tr>\
                 <tr><th>marts run</th><td>{}</td></tr>\
                 <tr><th>sales</th><td class=\"n\" id=\"publication-sales\">{}</td></tr>\
                 <tr><th>revenue</th><td class=\"n\">{}</td></tr>\
                 <tr><th>cities / salesmen</th><td class=\"n\">{} / {}</td></tr>\
                 <tr><th>unresolved sales</th><td class=\"n\">{}</td></tr></table>",
                esc(&p.publication_id),
                time(p.computed_at),
                (v.now - p.computed_at).num_seconds(),
                age(v.now, p.computed_at),
                esc(&p.run_id),
                p.sales,
                Money::from_cents(p.revenue),
                p.cities,
                p.salesmen,
                p.unresolved_sales
            );
        }
        Ok(None) => o.push_str(
            "<p id=\"publication-id\" data-none=\"true\">nothing published yet: the marts job has not run</p>",
        ),
        Err(e) => unavailable(&mut o, "publication", e),
    }

    o.push_str("<h2>Freshness per source</h2>");
    match &v.sources {
        Ok(rows) if rows.is_empty() => {
            o.push_str("<p class=\"muted\">no per-source watermarks in this publication</p>")
        }
        Ok(rows) => {
            o.push_str(
                "<table id=\"sources\"><tr><th>source</th><th>newest event</th><th>age</th>\
                 <th>position</th><th>events</th></tr>",
            );
            for r in rows {
                // `None`, the epoch and -1 all mean "nothing counted yet" (the store has used both
                // forms); `.into()` accepts either.
                let newest: Option<DateTime<Utc>> = r.newest_event_at.into();
                let position: Option<i64> = r.position.into();
                let (newest, old, level) = match newest.filter(|t| t.timestamp() > 0) {
                    Some(t) => (
                        time(t),
                        age(v.now, t),
                        backlog::judge_age((v.now - t).num_seconds(), &v.health),
                    ),
                    None => ("—".into(), "—".into(), Level::Ok),
                };
                let _ = write!(
                    o,
                    "<tr data-source=\"{}\" data-state=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td></tr>",
                    esc(&r.source),
                    level.as_str(),
                    esc(&r.source),
                    newest,
                    old,
                    position
                        .filter(|p| *p >= 0)
                        .map_or("—".to_string(), |p| p.to_string()),
                    r.events
                );
            }
            o.push_str("</table>");
        }
        Err(e) => unavailable(&mut o, "per-source watermarks", e),
    }

    o.push_str("<h2>Replication slots (source Postgres)</h2>");
    match &v.slots {
        None => o.push_str("<p class=\"muted\">not watched (health.source_url is empty)</p>"),
        Some(Ok(slots)) if slots.is_empty() => {
            o.push_str("<p class=\"muted\">no logical replication slot</p>")
        }
        Some(Ok(slots)) => {
            o.push_str(
                "<table id=\"slots\"><tr><th>slot</th><th>reader</th><th>WAL held</th>\
                 <th>may still take</th><th>wal_status</th></tr>",
            );
            for s in slots {
                let _ = write!(
                    o,
                    "<tr data-slot=\"{}\" data-state=\"{}\" data-retained-bytes=\"{}\"><td>{}</td>\
                     <td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(&s.name),
                    backlog::judge_slot(s, &v.health).as_str(),
                    s.retained_bytes,
                    esc(&s.name),
                    if s.active { "connected" } else { "none" },
                    backlog::human_bytes(s.retained_bytes),
                    s.safe_wal_bytes
                        .map_or("unlimited".to_string(), backlog::human_bytes),
                    esc(&s.wal_status)
                );
            }
            o.push_str("</table>");
        }
        Some(Err(e)) => unavailable(&mut o, "replication slots", e),
    }
    o.push_str("</div><div>");

    o.push_str("<h2>Dead letters</h2>");
    match &v.dead_letters {
        Ok(counts) => {
            let total: u64 = counts.iter().map(|c| c.count).sum();
            let _ = write!(
                o,
                "<p>total <b id=\"dead-letters-total\">{total}</b> · \
                 <a href=\"/v1/dead-letters\">/v1/dead-letters</a></p>"
            );
            if !counts.is_empty() {
                o.push_str(
                    "<table id=\"dead-letters\"><tr><th>source</th><th>kind</th><th>count</th>\
                     <th>newest</th></tr>",
                );
                for c in counts {
                    let _ = write!(
                        o,
                        "<tr class=\"dead-letter-count\" data-source=\"{}\" data-kind=\"{}\">\
                         <td>{}</td><td>{}</td><td class=\"n count\">{}</td><td>{} ago</td></tr>",
                        esc(&c.source),
                        esc(&c.kind),
                        esc(&c.source),
                        esc(&c.kind),
                        c.count,
                        age(v.now, c.newest_at)
                    );
                }
                o.push_str("</table>");
            }
        }
        Err(e) => unavailable(&mut o, "dead letters", e),
    }

    o.push_str("<h2>Raw tables (Iceberg)</h2>");
    match &v.tables {
        Ok(tables) => {
            o.push_str(
                "<table id=\"raw-tables\"><tr><th>table</th><th>snapshots</th>\
                 <th>current snapshot</th><th>last commit</th></tr>",
            );
            for t in tables {
                let last = t.snapshots.iter().map(|s| s.committed_at).max();
                let _ = write!(
                    o,
                    "<tr data-table=\"{}\"><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&t.table),
                    esc(&t.table),
                    t.snapshots.len(),
                    t.current_snapshot_id
                        .map_or("—".to_string(), |id| id.to_string()),
                    last.map_or("never".to_string(), |t| format!("{} ago", age(v.now, t)))
                );
            }
            o.push_str("</table>");
        }
        Err(e) => unavailable(&mut o, "lake", e),
    }
    render_crashes(&mut o, v);
    o.push_str("</div></div>");

    o.push_str("<h2>Marts runs</h2>");
    match &v.runs {
        Ok(runs) if runs.is_empty() => o.push_str("<p class=\"muted\">no run yet</p>"),
        Ok(runs) => {
            o.push_str(
                "<table id=\"runs\"><tr><th>started</th><th>took</th><th>status</th>\
                 <th>rows in</th><th>rows out</th><th>publication / error</th></tr>",
            );
            for r in runs {
                let took = (r.finished_at - r.started_at).num_seconds();
                let what = if r.error.is_empty() {
                    format!("<span class=\"id\">{}</span>", esc(&r.publication_id))
                } else {
                    format!("<span class=\"err\">{}</span>", esc(&r.error))
                };
                let _ = write!(
                    o,
                    "<tr class=\"run\" data-status=\"{}\"><td>{} ({} ago)</td><td class=\"n\">{took} s</td>\
                     <td><span class=\"badge {}\">{}</span></td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td>{what}</td></tr>",
                    esc(&r.status),
                    time(r.started_at),
                    age(v.now, r.started_at),
                    esc(&r.status),
                    esc(&r.status),
                    r.rows_in,
                    r.rows_out
                );
            }
            o.push_str("</table>");
        }
        Err(e) => unavailable(&mut o, "marts runs", e),
    }
    o.push_str("</body></html>");
    o
}

#[cfg(test)]
mod tests;
