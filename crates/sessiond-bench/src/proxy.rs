//! A loopback TCP proxy that counts what a store client sends, to measure the store round
//! trips of one request: PostgreSQL `Sync` and simple `Query` messages (each is one wait for
//! `ReadyForQuery`, i.e. one round trip), or Redis commands by name (RESP arrays). Bytes are
//! forwarded unchanged; only the client-to-server direction is parsed. Used in a separate,
//! unmeasured pass, never while throughput is measured (the hop costs latency and CPU).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Redis,
}

/// Counts by name: `query` (simple Query) and `sync` (extended query: Parse/Bind/Execute up
/// to a Sync) for PostgreSQL, or the command, lower case, for Redis.
pub type Counts = BTreeMap<String, u64>;

pub struct Proxy {
    pub addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`. Call inside a
    /// Tokio runtime; the proxy's tasks run there.
    pub async fn start(upstream: SocketAddr, protocol: Protocol) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::new()));
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = relay(client, upstream, protocol, c).await;
                });
            }
        });
        Ok(Self { addr, counts, task })
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// `after - before`, by name (names absent before count from 0).
pub fn delta(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    protocol: Protocol,
    counts: Arc<Mutex<Counts>>,
) -> Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("proxy: cannot reach {upstream}"))?;
    server.set_nodelay(true)?;
    let (mut sr, mut sw) = server.into_split();
    let (mut cr, mut cw) = client.into_split();
    let mut parser = Parser::new(protocol);
    // PostgreSQL: an SSLRequest is answered here ("no TLS"), so the stream stays readable.
    let mut buf = vec![0u8; 64 * 1024];
    if protocol == Protocol::Postgres {
        loop {
            let mut head = [0u8; 8];
            cr.read_exact(&mut head[..4]).await?;
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            anyhow::ensure!((8..=10_000).contains(&len), "proxy: bad startup length");
            let mut msg = vec![0u8; len];
            msg[..4].copy_from_slice(&head[..4]);
            cr.read_exact(&mut msg[4..]).await?;
            let code = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
            if len == 8 && (code == 80_877_103 || code == 80_877_104) {
                cw.write_all(b"N").await?;
                continue;
            }
            sw.write_all(&msg).await?;
            break;
        }
    }
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    loop {
        let n = cr.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sw.write_all(&buf[..n]).await?;
        let found = parser.feed(&buf[..n]);
        if !found.is_empty()
            && let Ok(mut c) = counts.lock()
        {
            for name in found {
                *c.entry(name).or_insert(0) += 1;
            }
        }
    }
    let _ = sw.shutdown().await;
    down.abort();
    Ok(())
}

/// Splits the client's byte stream into messages (after the PostgreSQL startup).
struct Parser {
    protocol: Protocol,
    pending: Vec<u8>,
}

impl Parser {
    fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            pending: Vec::new(),
        }
    }

    /// The names of the messages completed by `bytes`.
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut names = Vec::new();
        let mut at = 0;
        loop {
            let next = match self.protocol {
                Protocol::Postgres => pg_message(&self.pending[at..]),
                Protocol::Redis => resp_command(&self.pending[at..]),
            };
            match next {
                Some((used, name)) => {
                    at += used;
                    if let Some(n) = name {
                        names.push(n);
                    }
                }
                None => break,
            }
        }
        self.pending.drain(..at);
        names
    }
}

/// One typed frontend message: its length and, for `Sync` / `Query`, "sync" / "query".
fn pg_message(b: &[u8]) -> Option<(usize, Option<String>)> {
    if b.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize + 1;
    if b.len() < len {
        return None;
    }
    let name = match b[0] {
        b'S' => Some("sync".to_owned()),
        b'Q' => Some("query".to_owned()),
        _ => None,
    };
    Some((len, name))
}

/// `\r\n`-terminated line at the start of `b`: (its content, bytes used).
fn line(b: &[u8]) -> Option<(&[u8], usize)> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    Some((&b[..end], end + 2))
}

fn number(b: &[u8]) -> Option<usize> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// One RESP command (an array of bulk strings): bytes used and its name, lower case.
fn resp_command(b: &[u8]) -> Option<(usize, Option<String>)> {
    if b.is_empty() {
        return None;
    }
    if b[0] != b'*' {
        // Inline command (not sent by redis-rs): one line.
        let (l, used) = line(b)?;
        let name = l
            .split(|c| *c == b' ')
            .next()
            .map(|n| String::from_utf8_lossy(n).to_lowercase());
        return Some((used, name));
    }
    let (l, mut at) = line(&b[1..])?;
    at += 1;
    let n = number(l)?;
    let mut name = None;
    for i in 0..n {
        if b.get(at) != Some(&b'$') {
            // Not a bulk string: give up on this stream's framing (counts stop).
            return None;
        }
        let (l, used) = line(&b[at + 1..])?;
        let len = number(l)?;
        let start = at + 1 + used;
        if b.len() < start + len + 2 {
            return None;
        }
        if i == 0 {
            name = Some(String::from_utf8_lossy(&b[start..start + len]).to_lowercase());
        }
        at = start + len + 2;
    }
    Some((at, name))
}

/// `host:port` of a `postgres://` or `redis://` URL (default port `default_port`), resolved.
pub fn url_addr(url: &str, default_port: u16) -> Result<SocketAddr> {
    let authority = authority(url)?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let with_port = if hostport.rsplit_once(':').is_some() {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    };
    use std::net::ToSocketAddrs;
    with_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {with_port}"))
}

fn authority(url: &str) -> Result<&str> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .with_context(|| format!("not a URL: {url}"))?;
    Ok(rest.split(['/', '?', '#']).next().unwrap_or_default())
}

/// `url` with its host and port replaced by `addr` (user info, path and query kept).
pub fn url_via(url: &str, addr: SocketAddr) -> Result<String> {
    let authority = authority(url)?;
    let (scheme, rest) = url.split_once("://").context("not a URL")?;
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    Ok(format!(
        "{scheme}://{}{addr}{}",
        userinfo.unwrap_or_default(),
        &rest[authority.len()..]
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resp_commands_are_split_across_reads() {
        let mut p = Parser::new(Protocol::Redis);
        let cmds = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n";
        let (a, b) = cmds.split_at(20);
        let mut names = p.feed(a);
        names.extend(p.feed(b));
        assert_eq!(names, ["get", "evalsha"]);
    }

    #[test]
    fn pg_sync_and_query_are_round_trips() {
        let mut p = Parser::new(Protocol::Postgres);
        // Bind (empty body), Execute, Sync, Query "BEGIN".
        let mut b = vec![b'B', 0, 0, 0, 4, b'E', 0, 0, 0, 4, b'S', 0, 0, 0, 4];
        b.extend([b'Q', 0, 0, 0, 10]);
        b.extend(b"BEGIN\0");
        let names = p.feed(&b[..7]);
        assert!(names.is_empty());
        assert_eq!(p.feed(&b[7..]).len(), 2);
    }

    #[test]
    fn urls_are_rewritten() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            url_via("postgres://postgres@127.0.0.1:5432/test", a).unwrap(),
            "postgres://postgres@127.0.0.1:4000/test"
        );
        assert_eq!(
            url_via("redis://127.0.0.1:6379", a).unwrap(),
            "redis://127.0.0.1:4000"
        );
        assert_eq!(
            url_addr("postgres://u@127.0.0.1/db", 5432).unwrap(),
            "127.0.0.1:5432".parse().unwrap()
        );
    }
}
