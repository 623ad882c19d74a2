//! `tributary-ingest`: the file-drop and ERP (WS-*) ingestors, and the tools the demo and tests
//! use to feed the sources (sample Postgres changes, dropping files into the inbox).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tributary_common::health;
use tributary_ingest::config::IngestConfig;
use tributary_ingest::erp::{ErpIngestError, ErpIngestor, ErpMetrics};
use tributary_ingest::files::inbox::Inbox;
use tributary_ingest::files::metrics::{self, FileMetrics};
use tributary_ingest::files::partners::Partners;
use tributary_ingest::files::{FileIngestor, FilesError};
use tributary_ingest::{sample, store};

#[derive(Parser)]
#[command(version, about = "Get sales into Tributary")]
struct Cli {
    /// Config file (TOML); `TRIBUTARY_*` environment variables override it.
    #[arg(long, env = "TRIBUTARY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the file-drop ingestor: partner files from the inbox to Kafka.
    ///
    /// The inbox is `files.inbox` (a folder, or `s3://bucket/prefix`); partners come from
    /// `files.partners`. See `ingest/README.md`.
    Files {
        /// Take what is in the inbox now, then exit (with a progress bar per file).
        #[arg(long)]
        once: bool,
    },
    /// Run the WS ingestor: poll the legacy ERP's SOAP service by cursor into Kafka.
    ///
    /// The ERP is `erp.client` (endpoint, WS-Security credentials); the cursor lives in Kafka
    /// (`erp.topics.progress`), so a restart resumes where the last page committed.
    Erp {
        /// Poll until the ERP has nothing more, then exit (fails on a permanent error).
        #[arg(long)]
        once: bool,
    },
    /// Put a local file into the inbox under a partner's folder (works for S3 inboxes too).
    Drop {
        /// The file to drop.
        file: PathBuf,
        /// The partner's inbox folder.
        #[arg(long)]
        folder: String,
        /// Name in the inbox (default: the file's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Apply a seeded mix of inserts, updates and deletes to salesdb's `sale` table.
    SampleChanges {
        /// New sales to insert.
        #[arg(long, default_value_t = 20)]
        inserts: usize,
        /// Existing sales to correct (amount, sometimes salesman and city).
        #[arg(long, default_value_t = 5)]
        updates: usize,
        /// Existing sales to delete.
        #[arg(long, default_value_t = 2)]
        deletes: usize,
        /// Seed of the generator: the same seed over the same data plans the same changes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = tributary_common::telemetry::init(match cli.command {
        Command::Files { .. } => "tributary-ingest-files",
        Command::Erp { .. } => "tributary-ingest-erp",
        _ => "tributary-ingest",
    });
    let config: IngestConfig = tributary_common::load(cli.config.as_deref(), std::env::vars())
        .context("loading config")?;
    match cli.command {
        Command::Files { once } => {
            if config.files.inbox.starts_with("s3://") {
                tributary_common::profile::check_section("files.s3", &config.files.s3, &[])?;
            }
            run_files(config, once).await?
        }
        Command::Erp { once } => {
            tributary_common::profile::check_section("erp", &config.erp, &[])?;
            run_erp(config, once).await?
        }
        Command::Drop { file, folder, name } => {
            let inbox = Inbox::open(&config.files.inbox, &config.files.s3)?;
            let name = match name {
                Some(name) => name,
                None => file
                    .file_name()
                    .context("the file has no name")?
                    .to_string_lossy()
                    .into_owned(),
            };
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = format!("{folder}/{name}");
            inbox.put_bytes(&path, bytes).await?;
            println!("{}", inbox.object_url(&path));
        }
        Command::SampleChanges {
            inserts,
            updates,
            deletes,
            seed,
        } => {
            let client = store::connect(&config.salesdb_url).await?;
            let existing = store::existing(&client).await?;
            let mix = sample::Mix {
                inserts,
                updates,
                deletes,
            };
            let changes = sample::plan(&existing, mix, seed);
            let rows = store::apply(&client, &changes).await?;
            tracing::info!(
                changes = changes.len(),
                rows,
                seed,
                "sample changes applied"
            );
        }
    }
    Ok(())
}

async fn run_files(config: IngestConfig, once: bool) -> anyhow::Result<()> {
    let partners = Partners::load(std::path::Path::new(&config.files.partners))?;
    let metrics = FileMetrics::new()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    if !config.files.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&config.files.metrics_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for /metrics on {}",
                    config.files.metrics_listen
                )
            })?;
        tracing::info!(addr = %config.files.metrics_listen, "serving /metrics, /healthz and /readyz");
        let registry = metrics.registry.clone();
        tokio::spawn(health::serve(
            listener,
            move || metrics::encode(&registry),
            metrics::readiness(&config.kafka, &config.files),
            shutdown.clone(),
        ));
    }
    let opened = open_patiently(
        "file ingestor",
        once,
        &shutdown,
        FilesError::is_retryable,
        || {
            FileIngestor::open(
                &config.kafka,
                config.files.clone(),
                partners.clone(),
                metrics.clone(),
            )
        },
    )
    .await?;
    let Some(mut ingestor) = opened else {
        return Ok(());
    };
    if once {
        ingestor = ingestor.with_progress_bar();
    }
    let summary = ingestor.run(once, shutdown.clone()).await;
    shutdown.cancel();
    let summary = summary?;
    tracing::info!(?summary, "file ingestor stopped");
    Ok(())
}

async fn run_erp(config: IngestConfig, once: bool) -> anyhow::Result<()> {
    let erp = config.erp;
    erp.validate()
        .map_err(|reason| anyhow::anyhow!("invalid configuration: {reason}"))?;
    let metrics = ErpMetrics::new()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    if !erp.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&erp.metrics_listen)
            .await
            .with_context(|| format!("cannot listen for /metrics on {}", erp.metrics_listen))?;
        tracing::info!(addr = %erp.metrics_listen, "serving /metrics, /healthz and /readyz");
        let registry = metrics.registry.clone();
        tokio::spawn(health::serve(
            listener,
            move || metrics::encode(&registry),
            tributary_ingest::erp::metrics::readiness(&config.kafka, &erp.client.endpoint),
            shutdown.clone(),
        ));
    }
    let opened = open_patiently(
        "erp ingestor",
        once,
        &shutdown,
        ErpIngestError::is_retryable,
        || ErpIngestor::open(&config.kafka, erp.clone(), metrics.clone()),
    )
    .await?;
    let Some(ingestor) = opened else {
        return Ok(());
    };
    let summary = ingestor.run(once, shutdown.clone()).await;
    shutdown.cancel();
    let summary = summary?;
    tracing::info!(?summary, "erp ingestor stopped");
    Ok(())
}

/// Longest wait between two attempts to start an ingestor.
const OPEN_MAX_WAIT: Duration = Duration::from_secs(30);

/// Runs `open` until it succeeds, fails for good, or shutdown is asked for (`None`). A
/// dependency that is down when a long-running ingestor starts (Kafka, the inbox's store) is
/// waited for with jittered exponential backoff, `/readyz` saying which meanwhile, instead of
/// exiting into a supervisor's restart loop. `--once` runs fail at once instead.
async fn open_patiently<T, E, Open, Opening>(
    what: &str,
    once: bool,
    shutdown: &CancellationToken,
    is_retryable: fn(&E) -> bool,
    mut open: Open,
) -> Result<Option<T>, E>
where
    Open: FnMut() -> Opening,
    Opening: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    use backon::BackoffBuilder;
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(OPEN_MAX_WAIT)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match open().await {
            Ok(opened) => return Ok(Some(opened)),
            Err(error) if is_retryable(&error) && !once => {
                let wait = backoff.next().unwrap_or(OPEN_MAX_WAIT);
                tracing::warn!(%error, ?wait, "{what} cannot start yet, trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}
