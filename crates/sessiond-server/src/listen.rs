//! The accept loop: per-connection timeouts, a connection cap and optional TLS, on hyper.
//!
//! - **Header-read timeout**: a connection must deliver complete request headers (after the
//!   TLS handshake, if any) within it, or it is dropped. On HTTP/1.1 hyper also starts this
//!   timer whenever a keep-alive connection waits for its next request, so an idle HTTP/1.1
//!   connection is closed after `min(header_read_timeout, idle_timeout)`.
//! - **Idle timeout**: a connection with no request in flight and no bytes read or written
//!   for that long is shut down gracefully (HTTP/2 included).
//! - **Connection cap**: past `max_connections` open connections, new ones are accepted and
//!   closed at once; the ones already open are not affected.
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
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt;

/// Default for [`ServeOptions::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServeOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default interval at which the certificate and key files are checked for changes.
pub const DEFAULT_TLS_RELOAD_POLL: Duration = Duration::from_secs(2);

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
    /// A connection with no request in flight and no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// When set, the listener speaks HTTPS.
    pub tls: Option<Arc<TlsFiles>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish and closes idle connections.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Out-of-range values would overflow `Instant` arithmetic or the semaphore.
    let day = Duration::from_secs(86_400);
    let opts = Arc::new(ServeOptions {
        header_read_timeout: opts
            .header_read_timeout
            .clamp(Duration::from_millis(1), day),
        idle_timeout: opts.idle_timeout.clamp(Duration::from_millis(1), day),
        max_connections: opts.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        tls: opts.tls,
    });
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let acceptor = match &opts.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(t.server_config()?)),
        None => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut last_refusal_log: Option<Instant> = None;
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_refusal_log = Some(Instant::now());
                tracing::warn!(
                    max_connections = opts.max_connections,
                    "connection limit reached: refusing new connections"
                );
            }
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
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

/// When a connection last moved bytes, and whether a request is in flight.
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    started: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(Arc::clone(self))
    }
}

/// A request (until its response body is sent) keeps its connection from idling out.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that records when it last read or wrote bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why the watchdog ends a connection.
enum Expiry {
    /// No complete request headers within the header-read timeout: dropped.
    NoRequest,
    /// Idle past the idle timeout: shut down gracefully.
    Idle,
}

/// Resolves when the connection has overstayed one of its timeouts.
async fn watchdog(activity: &Activity, opts: &ServeOptions, accepted: Instant) -> Expiry {
    loop {
        let now = Instant::now();
        if !activity.started.load(Ordering::Relaxed) {
            let deadline = accepted + opts.header_read_timeout;
            if now >= deadline {
                return Expiry::NoRequest;
            }
            // Wake at the idle deadline too: a request starting meanwhile switches rules.
            let next = deadline.min(now + opts.idle_timeout.max(Duration::from_millis(100)));
            tokio::time::sleep_until(next.into()).await;
            continue;
        }
        if activity.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(opts.idle_timeout).await;
            continue;
        }
        let deadline = activity.last() + opts.idle_timeout;
        if now >= deadline {
            return Expiry::Idle;
        }
        tokio::time::sleep_until(deadline.into()).await;
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
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        match acceptor {
            None => self.drive(TokioIo::new(io), activity, false).await,
            Some(acceptor) => {
                let deadline = self.accepted + self.opts.header_read_timeout;
                let mut stop = self.stop.clone();
                let handshake = tokio::select! {
                    r = tokio::time::timeout_at(deadline.into(), acceptor.accept(io)) => r,
                    _ = stop.changed() => return,
                };
                match handshake {
                    Ok(Ok(tls)) => self.drive(TokioIo::new(tls), activity, true).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn drive<I>(self, io: I, activity: Arc<Activity>, tls: bool)
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
        // Once told to close for idleness, a connection that still lingers is dropped then.
        let mut hard_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                expiry = watchdog(&activity, &opts, accepted), if !closing => match expiry {
                    Expiry::NoRequest => {
                        tracing::debug!(%peer, "no complete request headers in time: dropped");
                        return;
                    }
                    Expiry::Idle => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        hard_deadline = Some(Instant::now() + opts.header_read_timeout);
                    }
                },
                () = sleep_until_opt(hard_deadline) => return,
                // Server shutdown: requests in flight finish, with no deadline of ours.
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    if !activity.started.load(Ordering::Relaxed) {
                        return;
                    }
                    if !closing {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
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
