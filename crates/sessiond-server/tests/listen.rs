//! The accept loop on real loopback sockets: slow and idle clients are dropped, the
//! connection caps hold, requests in flight are not cut but unsent responses are, client
//! addresses reach handlers, shutdown has a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query};
use axum::routing::get;
use sessiond_server::listen::{ServeOptions, serve_router};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Size of the `/big` response body.
const BIG: usize = 64 << 20;

/// A response body of `left` bytes in 64 KiB frames, made as they are asked for.
struct BigBody {
    left: usize,
    chunk: Bytes,
}

impl hyper::body::Body for BigBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.slice(..n)))))
    }
}

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
            "/big",
            get(|| async {
                Body::new(BigBody {
                    left: BIG,
                    chunk: Bytes::from(vec![b'x'; 64 << 10]),
                })
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
        ..ServeOptions::default()
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

fn with(f: impl FnOnce(&mut ServeOptions)) -> ServeOptions {
    let mut o = opts(10_000, 10_000, 10_000);
    f(&mut o);
    o
}

/// Reads until the server closes `s` (at most `within`): (bytes read, whether it closed).
async fn drain(s: &mut TcpStream, within: Duration) -> (usize, bool) {
    let deadline = Instant::now() + within;
    let mut total = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (total, true),
            Ok(Ok(n)) => total += n,
            Err(_) => return (total, false),
        }
    }
}

/// An HTTP/1.1 client that asks for a big response and does not read it: the connection is
/// dropped at the response timeout (1 s), although the idle and header-read timeouts are
/// far off; the response is cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_http1_response_is_cut_at_the_response_timeout() {
    let server = start(with(|o| o.response_timeout = Duration::from_secs(1))).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (read, closed) = drain(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "the connection is still open ({read} bytes read)");
    assert!(read < BIG, "the whole response was sent: {read} bytes");
}

/// One frame: type, flags, stream id, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw HTTP/2 client (prior knowledge) that answers the server's SETTINGS and PINGs.
struct H2 {
    w: tokio::net::tcp::OwnedWriteHalf,
    rx: tokio::sync::mpsc::UnboundedReceiver<Frame>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl H2 {
    /// Connects and sends the preface with `settings` (a SETTINGS payload).
    async fn open(addr: SocketAddr, settings: &[u8]) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = s.into_split();
        w.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        w.write_all(&frame(4, 0, 0, settings)).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let mut head = [0u8; 9];
                if r.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                if r.read_exact(&mut payload).await.is_err() {
                    return;
                }
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let f = Frame {
                    kind: head[3],
                    flags: head[4],
                    stream,
                    payload,
                };
                if tx.send(f).is_err() {
                    return;
                }
            }
        });
        Self { w, rx }
    }

    /// GET `path` on `stream` (HPACK: :method GET, :scheme http, literal :path).
    async fn get(&mut self, stream: u32, path: &str) {
        let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
        block.extend_from_slice(path.as_bytes());
        let _ = self.w.write_all(&frame(1, 5, stream, &block)).await;
    }

    async fn ping(&mut self) {
        let _ = self.w.write_all(&frame(6, 0, 0, &[7; 8])).await;
    }

    /// The next frame but PINGs (SETTINGS are acknowledged, then returned); `None` once the
    /// server closed.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let f = self.rx.recv().await?;
            match (f.kind, f.flags & 1) {
                (4, 0) => {
                    let _ = self.w.write_all(&frame(4, 1, 0, &[])).await;
                    return Some(f);
                }
                (6, 0) => {
                    let _ = self.w.write_all(&frame(6, 1, 0, &f.payload)).await;
                }
                _ => return Some(f),
            }
        }
    }
}

/// HTTP/2 with SETTINGS_INITIAL_WINDOW_SIZE = 0: the response body can never be sent. The
/// connection is dropped at the response timeout (1 s), the idle timeout being far off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_held_by_a_zero_window_is_cut() {
    let server = start(with(|o| o.response_timeout = Duration::from_secs(1))).await;
    let mut h2 = H2::open(server.addr, &[0, 4, 0, 0, 0, 0]).await;
    h2.get(1, "/healthz").await;
    let start = Instant::now();
    let mut headers = false;
    let mut body_done = false;
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(f) = h2.next().await {
            match f.kind {
                1 => headers = true,
                0 if f.flags & 1 == 1 => body_done = true,
                _ => {}
            }
        }
    })
    .await;
    assert!(headers, "the response headers were not sent");
    assert!(!body_done, "the body went through a zero window");
    assert!(
        closed.is_ok(),
        "the connection is still open after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
}

/// One HTTP/2 connection kept busy for 3 s by overlapping 600 ms requests, with a response
/// timeout of 1 s: each request is judged by its own start, so all are answered and the
/// connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_timed_each_from_its_own_start() {
    let server = start(with(|o| o.response_timeout = Duration::from_secs(1))).await;
    let mut h2 = H2::open(server.addr, &[]).await;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let (mut sent, mut done) = (0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(8);
    while done < 10 {
        assert!(Instant::now() < deadline, "{done} of 10 answered");
        tokio::select! {
            _ = tick.tick(), if sent < 10 => {
                h2.get(2 * sent + 1, "/slow?ms=600").await;
                sent += 1;
            }
            f = h2.next() => {
                let f = f.unwrap_or_else(|| panic!("closed with {done} of 10 answered"));
                if f.kind == 0 && f.flags & 1 == 1 && f.stream % 2 == 1 {
                    done += 1;
                }
                assert_ne!(f.kind, 3, "a stream was reset");
                assert_ne!(f.kind, 7, "GOAWAY");
            }
        }
    }
}

/// HTTP/2 PINGs from the client every 200 ms do not keep an idle connection (idle timeout
/// 1 s) open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_pings_do_not_keep_an_idle_connection_open() {
    let server = start(opts(10_000, 1_000, 10_000)).await;
    let mut h2 = H2::open(server.addr, &[]).await;
    h2.get(1, "/healthz").await;
    let mut answered = false;
    while !answered {
        let f = h2.next().await.expect("an answer");
        answered = f.kind == 0 && f.flags & 1 == 1 && f.stream == 1;
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the pinging idle connection is still open after {:?}",
            start.elapsed()
        );
        tokio::select! {
            _ = tick.tick() => h2.ping().await,
            f = h2.next() => if f.is_none() { break },
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
}

/// The server's SETTINGS cap concurrent streams at 128.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_concurrent_streams_are_capped() {
    let server = start(ServeOptions::default()).await;
    let mut h2 = H2::open(server.addr, &[]).await;
    let settings = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let f = h2.next().await.expect("the server's SETTINGS");
            if f.kind == 4 && f.flags & 1 == 0 {
                return f.payload;
            }
        }
    })
    .await
    .unwrap();
    let max = settings
        .chunks(6)
        .find(|p| p[..2] == [0, 3])
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(max, Some(128), "SETTINGS {settings:?}");
}

async fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(addr).await.unwrap()
}

/// With 3 connections per client, 127.0.0.1's fourth is closed unanswered while another
/// client (127.0.0.2) is served; once one of the three closes, 127.0.0.1 is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection() {
    let server = start(with(|o| o.max_connections_per_client = 3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", server.addr).await;
        s.write_all(GET_HEALTHZ).await.unwrap();
        assert!(read_response(&mut s).await.is_some());
        held.push(s);
    }
    let mut extra = connect_from("127.0.0.1", server.addr).await;
    let _ = extra.write_all(GET_HEALTHZ).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(2))
            .await
            .is_some(),
        "the client's connection past its cap must be closed"
    );
    let mut other = connect_from("127.0.0.2", server.addr).await;
    other.write_all(GET_HEALTHZ).await.unwrap();
    let res = read_response(&mut other)
        .await
        .expect("another client is served");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    for s in &mut held {
        s.write_all(GET_HEALTHZ).await.unwrap();
        assert!(read_response(s).await.is_some(), "a held connection broke");
    }
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = connect_from("127.0.0.1", server.addr).await;
        let _ = s.write_all(GET_HEALTHZ).await;
        if read_response(&mut s).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "not served again under its cap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// At shutdown, a request still running when the drain timeout (1 s) passes is dropped
/// with its connection, and `serve_router` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_what_is_left_after_the_drain_timeout() {
    let mut server = start(with(|o| o.drain_timeout = Duration::from_secs(1))).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /slow?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    drop(server.stop.take());
    tokio::time::timeout(Duration::from_secs(4), server.done)
        .await
        .expect("serve returns after the drain timeout")
        .unwrap()
        .unwrap();
    assert!(
        stopped.elapsed() >= Duration::from_millis(800),
        "{:?}",
        stopped.elapsed()
    );
    assert!(
        read_response(&mut s).await.is_none(),
        "the request was answered"
    );
}
