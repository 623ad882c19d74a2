//! `tributary-erp-sim`: the legacy ERP simulator (SOAP 1.1/1.2, WSDL, WS-Security), the peer
//! the WS ingestor polls in tests and in the demo. See `tributary_ingest::erp::sim` for the
//! endpoints.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary_ingest::erp::{
    ErpClient, ErpClientConfig, ErpSimConfig, model::GetSalesRequest, sim,
};

#[derive(Parser)]
#[command(
    version,
    about = "Simulated legacy ERP: SOAP sales service with WSDL at /ws/sales?wsdl",
    long_about = "Simulated legacy ERP: SOAP 1.1/1.2 sales service with a WSDL at \
                  GET /ws/sales?wsdl, WS-Security UsernameToken (PasswordDigest), cursor paging, \
                  SOAP faults and throttling. Admin JSON endpoints for tests and the demo: \
                  GET/POST /admin/sales, POST /admin/sales/{id}/cancel, POST /admin/throttle."
)]
struct Cli {
    /// Config file (TOML); `TRIBUTARY_*` environment variables override it.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address; overrides the config's `listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Seed of the generated change log; overrides the config's `seed`.
    #[arg(long)]
    seed: Option<u64>,
    /// Print a freshly signed SOAP 1.1 `GetSales` request (first page, 10 changes) with the
    /// configured credentials and exit: pipe it into curl to try the service by hand.
    #[arg(long)]
    print_get_sales_request: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = tributary_common::telemetry::init("tributary-erp-sim");
    let cli = Cli::parse();
    let mut config: ErpSimConfig = tributary_common::load(cli.config.as_deref(), std::env::vars())
        .context("loading config")?;
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(seed) = cli.seed {
        config.seed = seed;
    }
    if cli.print_get_sales_request {
        let client = ErpClient::new(ErpClientConfig {
            username: config.username.clone(),
            password: config.password.clone(),
            ..ErpClientConfig::default()
        })?;
        let payload = GetSalesRequest {
            cursor: String::new(),
            page_size: 10,
        }
        .to_xml();
        println!("{}", client.build_request(&payload));
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(tributary_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    sim::run(listener, config, shutdown).await?;
    Ok(())
}
