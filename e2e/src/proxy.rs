//! A TCP proxy in front of a real server that can be made slow (a delay before every chunk it
//! forwards) or stalled (connections accepted, nothing forwarded either way), to try the API
//! against a ClickHouse that answers late or not at all without changing ClickHouse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; its accept loop and connections end when it is dropped.
pub struct StallProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Listens on a free local port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_on(([127, 0, 0, 1], 0).into(), upstream).await
    }

    /// Listens on `listen` (a fixed port, for a server that advertises where its clients must
    /// come back: Kafka) and forwards every connection to `upstream`.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("proxy cannot listen on {listen}: {e}"));
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, d) = (stalled.clone(), delay_ms.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, s.clone(), d.clone()));
                tokio::spawn(pump(server_read, client_write, s.clone(), d.clone()));
            }
        });
        Self {
            addr,
            stalled,
            delay_ms,
            accept,
        }
    }

    /// The proxy's port (for URLs that are not HTTP).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<the proxy>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops (or resumes) forwarding anything, on every connection, old and new.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Waits this long before forwarding each chunk.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delay = delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
