//! The accept loop: per-connection timeouts, connection caps and optional TLS, on hyper.
//!
//! - **Header-read timeout**: a connection must deliver complete request headers (after the
//!   TLS handshake, if any) within it, or it is dropped. On HTTP/1.1 hyper also starts this
//!   timer whenever a keep-alive connection waits for its next request, so an idle HTTP/1.1
//!   connection is closed after `min(header_read_timeout, idle_timeout)`.
//! - **Response timeout**: each request must be answered, its response body fully handed to
//!   hyper, within this time of its start (its headers read); when any request on a
//!   connection overstays it, the whole connection is dropped. This bounds clients that
//!   stop reading (HTTP/1.1) or never open their flow-control window (HTTP/2), and request
//!   bodies that trickle in. Each request is judged by its own start, so a busy HTTP/2
//!   connection with many short requests is never cut.
//! - **Idle timeout**: a connection with no request in flight for that long (counted from
//!   the end of its last request, or from its start) is shut down gracefully, HTTP/2
//!   included, whatever bytes (PING, WINDOW_UPDATE…) the client keeps sending.
//! - **Connection caps**: past `max_connections` open connections, or past
//!   `max_connections_per_client` from one client (an IPv4 address or an IPv6 /64), new
//!   ones are accepted and closed at once; the ones already open are not affected.
//! - **HTTP/2**: at most [`H2_MAX_CONCURRENT_STREAMS`] streams at once per connection; the
//!   server sends no keep-alive PINGs of its own.
//! - **Shutdown**: accepting stops, requests in flight get up to `drain_timeout` to finish,
//!   then the connections left are dropped.
//! - **TLS**: rustls with the `ring` provider, HTTP/2 and HTTP/1.1 by ALPN; the certificate
//!   and key are re-read on SIGHUP and when their files change, without touching open
//!   connections.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tower::ServiceExt;

/// Default for [`ServeOptions::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServeOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ServeOptions::response_timeout`]: longer than the middleware's 30 s request
/// timeout, so that a slow handler's 503 still gets out.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default for [`ServeOptions::max_connections_per_client`].
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 1_000;
/// Default for [`ServeOptions::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval at which the certificate and key files are checked for changes.
pub const DEFAULT_TLS_RELOAD_POLL: Duration = Duration::from_secs(2);
/// Streams an HTTP/2 client may have open at once on one connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;

/// A failed `accept` (other than the client's own abort) pauses the loop this long, so that
/// running out of file descriptors neither ends the server nor spins a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// In a request's extensions when it came over this listener's TLS: the hop into sessiond
/// is HTTPS.
#[derive(Clone, Copy, Debug)]
pub struct ServedOverTls;

/// How the listener treats connections.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Time allowed for the TLS handshake plus complete request headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Time from a request's start until its response is fully sent; past it the
    /// connection is dropped.
    pub response_timeout: Duration,
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections open at once from one client (IPv4 address or IPv6 /64); 0: no limit.
    pub max_connections_per_client: usize,
    /// At shutdown, time left to the requests in flight before their connections are
    /// dropped.
    pub drain_timeout: Duration,
    /// When set, the listener speaks HTTPS.
    pub tls: Option<Arc<TlsFiles>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            tls: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who counts as one client for `max_connections_per_client`: an IPv4 address, or the /64
/// an IPv6 address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Open connections per client.
type ClientCounts = Arc<Mutex<HashMap<ClientKey, usize>>>;

/// One connection counted against its client; uncounted when dropped.
struct ClientSlot {
    counts: ClientCounts,
    key: ClientKey,
}

impl ClientSlot {
    /// `None` when the client already has `max` connections open (`max` 0: no limit).
    fn take(counts: &ClientCounts, ip: IpAddr, max: usize) -> Option<Option<Self>> {
        if max == 0 {
            return Some(None);
        }
        let key = ClientKey::of(ip);
        let mut map = lock(counts);
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Some(Self {
            counts: Arc::clone(counts),
            key,
        }))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.counts);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Logs a refused connection at most every 10 s per reason.
fn log_refusal(last: &mut Option<Instant>, log: impl FnOnce()) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
        *last = Some(Instant::now());
        log();
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish (for at most `drain_timeout`) and closes idle connections.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Out-of-range values would overflow `Instant` arithmetic or the semaphore.
    let day = Duration::from_secs(86_400);
    let clamp = |d: Duration| d.clamp(Duration::from_millis(1), day);
    let opts = Arc::new(ServeOptions {
        header_read_timeout: clamp(opts.header_read_timeout),
        idle_timeout: clamp(opts.idle_timeout),
        response_timeout: clamp(opts.response_timeout),
        max_connections: opts.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        max_connections_per_client: opts.max_connections_per_client,
        drain_timeout: opts.drain_timeout.min(day),
        tls: opts.tls,
    });
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let per_client: ClientCounts = Arc::default();
    let acceptor = match &opts.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(t.server_config()?)),
        None => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut last_refusal_log: Option<Instant> = None;
    let mut last_client_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) {
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let Some(slot) = ClientSlot::take(&per_client, peer.ip(), opts.max_connections_per_client)
        else {
            drop(stream);
            log_refusal(&mut last_client_refusal_log, || {
                tracing::warn!(
                    client = %peer.ip(),
                    max_connections_per_client = opts.max_connections_per_client,
                    "per-client connection limit reached: refusing that client's new connections"
                )
            });
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            log_refusal(&mut last_refusal_log, || {
                tracing::warn!(
                    max_connections = opts.max_connections,
                    "connection limit reached: refusing new connections"
                )
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            router: router.clone(),
            builder: builder.clone(),
            opts: Arc::clone(&opts),
            stop: stop_rx.clone(),
            accepted: Instant::now(),
        };
        let acceptor = acceptor.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            conn.run(stream, acceptor).await;
            drop(permit);
            drop(slot);
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    // Each connection drops itself at the drain deadline; the margin covers the last wakeups.
    let waited = opts.drain_timeout + Duration::from_secs(1);
    if tokio::time::timeout(waited, alive_rx.recv()).await.is_err() {
        tracing::warn!("connections still open after the shutdown deadline: abandoned");
    }
    Ok(())
}

/// The requests in flight on a connection and when the last one ended.
struct Activity {
    state: Mutex<Requests>,
    /// Signalled when a request starts or ends.
    changed: Notify,
}

struct Requests {
    started: bool,
    next_id: u64,
    /// Start of each request in flight, by id (ids grow with time: the first is the oldest).
    open: BTreeMap<u64, Instant>,
    /// End of the last request, or the connection's start.
    last_end: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(Requests {
                started: false,
                next_id: 0,
                open: BTreeMap::new(),
                last_end: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn started(&self) -> bool {
        lock(&self.state).started
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let id = {
            let mut s = lock(&self.state);
            s.started = true;
            let id = s.next_id;
            s.next_id += 1;
            s.open.insert(id, Instant::now());
            id
        };
        self.changed.notify_one();
        InFlight {
            activity: Arc::clone(self),
            id,
        }
    }
}

/// A request, from its start until its response body is sent (or dropped).
struct InFlight {
    activity: Arc<Activity>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut s = lock(&self.activity.state);
            s.open.remove(&self.id);
            s.last_end = Instant::now();
        }
        self.activity.changed.notify_one();
    }
}

/// Why the watchdog ends a connection.
enum Expiry {
    /// No complete request headers within the header-read timeout: dropped.
    NoRequest,
    /// A request not answered within the response timeout: dropped.
    Response,
    /// Idle past the idle timeout: shut down gracefully.
    Idle,
}

/// Resolves when the connection has overstayed one of its timeouts. Once `closing`, only
/// the response timeout applies.
async fn watchdog(
    activity: &Activity,
    opts: &ServeOptions,
    accepted: Instant,
    closing: bool,
) -> Expiry {
    loop {
        // Created before reading the state: a change from now on wakes it (`notify_one`
        // keeps a permit when nobody waits).
        let changed = activity.changed.notified();
        let (deadline, expiry) = {
            let s = lock(&activity.state);
            match s.open.first_key_value() {
                Some((_, start)) => (Some(*start + opts.response_timeout), Expiry::Response),
                None if closing => (None, Expiry::Idle),
                None if !s.started => {
                    (Some(accepted + opts.header_read_timeout), Expiry::NoRequest)
                }
                None => (Some(s.last_end + opts.idle_timeout), Expiry::Idle),
            }
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return expiry;
        }
        tokio::select! {
            () = sleep_until_opt(deadline) => {}
            () = changed => {}
        }
    }
}

/// One accepted connection.
struct Conn {
    peer: SocketAddr,
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    opts: Arc<ServeOptions>,
    stop: watch::Receiver<bool>,
    accepted: Instant,
}

impl Conn {
    async fn run(self, stream: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        match acceptor {
            None => self.drive(TokioIo::new(stream), false).await,
            Some(acceptor) => {
                let deadline = self.accepted + self.opts.header_read_timeout;
                let mut stop = self.stop.clone();
                let handshake = tokio::select! {
                    r = tokio::time::timeout_at(deadline.into(), acceptor.accept(stream)) => r,
                    _ = stop.changed() => return,
                };
                match handshake {
                    Ok(Ok(tls)) => self.drive(TokioIo::new(tls), true).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn drive<I>(self, io: I, tls: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            router,
            builder,
            opts,
            mut stop,
            accepted,
        } = self;
        let activity = Arc::new(Activity::new());
        let tracker = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if tls {
                req.extensions_mut().insert(ServedOverTls);
            }
            let busy = tracker.begin();
            let response = router.clone().oneshot(req);
            async move {
                let response = response.await?;
                // The guard lives as long as the response body: until it is sent.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _busy = &busy;
                        frame
                    }))
                }))
            }
        });
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        let mut stopping = false;
        // Once told to close, a connection that still lingers is dropped then.
        let mut hard_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                expiry = watchdog(&activity, &opts, accepted, closing) => match expiry {
                    Expiry::NoRequest => {
                        tracing::debug!(%peer, "no complete request headers in time: dropped");
                        return;
                    }
                    Expiry::Response => {
                        tracing::debug!(%peer, "a response was not sent in time: connection dropped");
                        return;
                    }
                    Expiry::Idle => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        hard_deadline = Some(Instant::now() + opts.header_read_timeout);
                    }
                },
                () = sleep_until_opt(hard_deadline) => return,
                // Server shutdown: requests in flight get until the drain deadline.
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    if !activity.started() {
                        return;
                    }
                    if !closing {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    let drain = Instant::now() + opts.drain_timeout;
                    hard_deadline = Some(hard_deadline.map_or(drain, |d| d.min(drain)));
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A PEM certificate chain and private key, re-read on demand; rustls asks it for the
/// current certificate at each handshake.
#[derive(Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times and sizes of the files as last loaded (or tried).
    stamp: Mutex<Option<FileStamp>>,
}

type FileStamp = [(SystemTime, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Option<FileStamp> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(cert)?, one(key)?])
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

fn load_certified_key(cert: &Path, key: &Path) -> io::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, format!("cannot read the certificate chain: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no PEM certificate found"));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(key, format!("cannot read a PEM private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| invalid(key, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        invalid(
            key,
            format!("does not match the certificate in {}: {e}", cert.display()),
        )
    })?;
    Ok(certified)
}

impl TlsFiles {
    /// Reads both files; an error names the file at fault.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> io::Result<Arc<Self>> {
        let (cert, key) = (cert.into(), key.into());
        let before = stamp(&cert, &key);
        let certified = load_certified_key(&cert, &key)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified)),
            stamp: Mutex::new(before),
            cert,
            key,
        }))
    }

    /// Re-reads both files; on error the certificate in use stays.
    pub fn reload(&self) -> io::Result<()> {
        let before = stamp(&self.cert, &self.key);
        if let Ok(mut s) = self.stamp.lock() {
            *s = before;
        }
        let certified = load_certified_key(&self.cert, &self.key)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(certified);
        }
        Ok(())
    }

    /// Reloads if either file's modification time or size changed since the last load.
    fn reload_if_changed(&self) -> Option<io::Result<()>> {
        let now = stamp(&self.cert, &self.key);
        let changed = self.stamp.lock().map(|s| *s != now).unwrap_or(false);
        changed.then(|| self.reload())
    }

    fn log_reload(&self, why: &str, result: io::Result<()>) {
        match result {
            Ok(()) => tracing::info!(
                cert = %self.cert.display(),
                reason = why,
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                reason = why,
                "TLS certificate reload failed; the previous certificate stays in use"
            ),
        }
    }

    /// A rustls configuration that always presents the current certificate.
    pub fn server_config(self: &Arc<Self>) -> io::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reloads on SIGHUP (unix) and, unless `poll` is `None`, when the files change (checked
    /// that often), for the life of the process. Must be called within a Tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>, poll: Option<Duration>) {
        let files = Arc::clone(self);
        // Installed before returning: a SIGHUP from now on reloads instead of ending the process.
        #[cfg(unix)]
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: no reload on signal");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = poll.map(|every| {
                let every = every.max(Duration::from_millis(100));
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let checked = async {
                    match tick.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                tokio::select! {
                    () = hangup => files.log_reload("SIGHUP", files.reload()),
                    () = checked => {
                        if let Some(r) = files.reload_if_changed() {
                            files.log_reload("file changed", r);
                        }
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for TlsFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}
