//! A TCP proxy between the verifier and a node, able to drop every open connection and to
//! refuse the revocation feed while letting other requests through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    pub base: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    block_feed: AtomicBool,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl Proxy {
    /// Forwards 127.0.0.1:<ephemeral> to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let s2 = s.clone();
                let task = tokio::spawn(async move { pipe(client, &target, &s2).await });
                let mut conns = s.conns.lock().unwrap();
                conns.retain(|t| !t.is_finished());
                conns.push(task);
            }
        });
        Self {
            base,
            shared,
            accept,
        }
    }

    /// Drops every open connection (as a restart or a network cut would).
    pub fn cut(&self) {
        for t in self.shared.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// While set, a request for the revocation feed gets its connection closed.
    pub fn block_feed(&self, on: bool) {
        self.shared.block_feed.store(on, Ordering::SeqCst);
    }
}

async fn pipe(mut client: TcpStream, target: &str, s: &Shared) {
    let mut first = vec![0u8; 8192];
    let Ok(n) = client.read(&mut first).await else {
        return;
    };
    first.truncate(n);
    let is_feed = first
        .windows(b"/oauth2/revocations".len())
        .any(|w| w == b"/oauth2/revocations");
    if is_feed && s.block_feed.load(Ordering::SeqCst) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    if server.write_all(&first).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
