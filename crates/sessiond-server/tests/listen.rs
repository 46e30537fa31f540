//! The accept loop on real loopback sockets: slow and idle clients are dropped, the
//! connection cap holds, requests in flight are not cut, client addresses reach handlers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::{ConnectInfo, Query};
use axum::routing::get;
use sessiond_server::listen::{ServeOptions, serve_router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|Query(q): Query<HashMap<String, u64>>| async move {
                tokio::time::sleep(Duration::from_millis(q.get("ms").copied().unwrap_or(0))).await;
                "slow ok"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
}

async fn start(opts: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(serve_router(listener, app(), opts, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        done,
    }
}

fn opts(header_ms: u64, idle_ms: u64, max_connections: usize) -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
        tls: None,
    }
}

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

/// Reads one HTTP/1.1 response with a Content-Length body; `None` if the server closed the
/// connection (EOF or reset) before a complete response.
async fn read_response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(text);
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response and no close within 10 s"),
        }
    }
}

/// Waits until the server closes `s`, at most `within`; returns how long it took.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn healthz(addr: SocketAddr) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// 200 silent connections and 20 with half a request: `/healthz` answers throughout, and
/// the server closes every one of them within the header-read timeout (1 s) plus a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_healthz_keeps_answering() {
    let server = start(opts(1_000, 30_000, 10_000)).await;
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(TcpStream::connect(server.addr).await.unwrap());
    }
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        conns.push(s);
    }
    let opened = Instant::now();
    assert!(
        healthz(server.addr).await,
        "healthz during the slow clients"
    );
    for (i, s) in conns.iter_mut().enumerate() {
        let left = Duration::from_millis(3_000).saturating_sub(opened.elapsed());
        assert!(
            closed_within(s, left).await.is_some(),
            "connection {i} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    assert!(healthz(server.addr).await, "healthz after the slow clients");
}

/// A keep-alive connection left idle is closed after the idle timeout (here shorter than the
/// header-read timeout, so it is the idle timer that acts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let server = start(opts(10_000, 1_000, 10_000)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(GET_HEALTHZ).await.unwrap();
    let res = read_response(&mut s).await.expect("a response");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let took = closed_within(&mut s, Duration::from_secs(3))
        .await
        .expect("the idle connection must be closed within 3 s");
    assert!(
        took >= Duration::from_millis(700),
        "closed too early: {took:?}"
    );
}

/// A request that takes longer than the idle timeout is not cut, and its keep-alive
/// connection stays usable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_not_idle() {
    let server = start(opts(2_000, 500, 10_000)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /slow?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let res = read_response(&mut s).await.expect("the slow response");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        !res.to_ascii_lowercase().contains("connection: close"),
        "the connection was marked for closing: {res}"
    );
    s.write_all(GET_HEALTHZ).await.unwrap();
    let res = read_response(&mut s)
        .await
        .expect("a second request on the same connection");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
}

/// With a cap of 5, a sixth connection is closed unanswered while five are open; once they
/// close, new connections are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed() {
    let server = start(opts(10_000, 10_000, 5)).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(GET_HEALTHZ).await.unwrap();
        assert!(read_response(&mut s).await.is_some());
        held.push(s);
    }
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let _ = extra.write_all(GET_HEALTHZ).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(2))
            .await
            .is_some(),
        "the connection past the cap must be closed"
    );
    // The held ones still work.
    for s in &mut held {
        s.write_all(GET_HEALTHZ).await.unwrap();
        assert!(read_response(s).await.is_some(), "a held connection broke");
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !healthz(server.addr).await {
        assert!(Instant::now() < deadline, "not served again after the cap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Handlers see the client's address through `ConnectInfo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_the_client_address() {
    let server = start(ServeOptions::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let res = read_response(&mut s).await.unwrap();
    assert!(res.ends_with(&me.to_string()), "{res} vs {me}");
}

/// Shutdown lets a request in flight finish, then `serve_router` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let mut server = start(ServeOptions::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /slow?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(GET_HEALTHZ).await.unwrap();
    assert!(read_response(&mut idle).await.is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(server.stop.take());
    let res = read_response(&mut s).await.expect("the request in flight");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        closed_within(&mut idle, Duration::from_secs(2))
            .await
            .is_some(),
        "an idle connection is closed at shutdown"
    );
    tokio::time::timeout(Duration::from_secs(3), server.done)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

/// Reads one HTTP/2 frame: (type, flags, payload); `None` when the server closed.
async fn read_frame(s: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// HTTP/2 has no header-read timer in hyper: an idle HTTP/2 connection (prior knowledge,
/// one request answered) is closed by the idle timeout alone. The client answers the
/// server's SETTINGS and PINGs as a real one would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connection_is_closed() {
    let server = start(opts(10_000, 1_000, 10_000)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // SETTINGS
    // HEADERS, stream 1, END_STREAM | END_HEADERS: GET http:// /  (HPACK static 2, 6, 4)
    s.write_all(&[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84])
        .await
        .unwrap();
    let start = Instant::now();
    let mut answered = false;
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some((kind, flags, payload)) = read_frame(&mut s).await {
            match (kind, flags & 1) {
                (1, _) => answered = true, // HEADERS
                (4, 0) => s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await.unwrap(), // SETTINGS ack
                (6, 0) => {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0]; // PING ack
                    ack.extend_from_slice(&payload);
                    s.write_all(&ack).await.unwrap();
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(answered, "the request was not answered");
    assert!(
        closed.is_ok(),
        "the idle HTTP/2 connection is still open after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
}
