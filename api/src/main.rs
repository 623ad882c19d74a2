//! `tributary-api`: parse the CLI, load config, bind, serve until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary_api::ApiConfig;

/// REST API over the rankings in ClickHouse (`/v1/rankings/…`, `/docs`, `/openapi.json`).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML config file; `TRIBUTARY_*` environment variables override it
    /// (`TRIBUTARY_LISTEN`, `TRIBUTARY_CLICKHOUSE__URL`, …).
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address; overrides the config's `listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_openapi {
        println!("{}", tributary_api::openapi_json());
        return Ok(());
    }
    let _telemetry = tributary_common::telemetry::init("tributary-api");
    let mut config: ApiConfig = tributary_common::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    let addr = config.listen_addr().map_err(anyhow::Error::msg)?;
    config.auth.validate().map_err(anyhow::Error::msg)?;
    tributary_common::profile::check_section("", &config, config.lake.unused_credentials())?;
    if config.auth.write_token.is_none() {
        tracing::warn!("no auth.write_token: POST /api/v1/lineage is refused (403)");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;

    let shutdown = CancellationToken::new();
    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    tributary_api::run(listener, config, shutdown).await?;
    Ok(())
}
