//! Serving HTTP/1 connections within limits.
//!
//! `axum::serve` gives hyper no timer (so its header-read timeout is off),
//! no body or idle timeout and no cap on connections: a security review held
//! requests half-sent forever, pinned about 400 KiB per unfinished request
//! head, and shut ordinary clients out with 1,100 idle connections against a
//! 1,024 open-file limit. Here the accept loop and each connection's task
//! enforce [`ConnectionLimits`]:
//!
//! - A connection is *idle* (waiting for a request's first byte), *reading a
//!   head* (bytes arrived, headers not complete) or *busy* (a request is being
//!   answered). An idle one is closed after the keep-alive timeout, one
//!   reading a head after the header-read timeout; a busy one is bounded by the
//!   request timeout (408, in `crate::routes`' outer layer). hyper's own
//!   header-read timer is off: it starts when a connection begins to wait,
//!   so it could not tell the first two apart, and it would cost every
//!   request a timer registered and cancelled (a boxed sleep and the timer
//!   wheel's lock), which the connection task's own deadline does not.
//! - hyper's read buffer is at most [`MAX_HEAD_BYTES`], so an unfinished head
//!   pins at most that much; a longer head is answered 431 by hyper.
//! - At most `max_connections` are open, and that many always fit in the
//!   open-file limit beside a reserve ([`connection_cap`]), so `accept` never
//!   fails for want of descriptors. A cap alone would let a flood of idle
//!   connections shut new clients out until timeouts fire; so at the cap the
//!   connection that has waited longest without a request in progress (idle, or
//!   still sending its head) is closed to make room, and a new client is
//!   answered at once. A request whose body has not all arrived is treated
//!   alike, by how long since its last bytes (a slow upload holds a connection
//!   as an unfinished head does); a connection younger than a quarter second
//!   is spared. Requests being worked on are never cut; when every connection
//!   is, new ones wait in the kernel's backlog.
//! - At most `max_connections_per_address` come from one client address (an
//!   IPv6 /64), by the same rule within that address, so one address cannot
//!   hold the whole pool with requests in progress; trusted proxies are exempt.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;
use tower::util::Oneshot;

use crate::config::ConnectionLimits;
use crate::routes::{Service as Routes, WithPeer};

/// File descriptors kept out of the connection cap, for what the server opens
/// besides connections: the database (SQLite: a file, its WAL and shared
/// memory per pooled connection, 8 connections; PostgreSQL: 16), Redis, the
/// file watcher, the runtime's own, standard streams. 128 is ample for all of
/// them together.
const FD_RESERVE: u64 = 128;

/// hyper's read buffer at most, so the most an unfinished request head can
/// pin (hyper's default is about 400 KiB). Twice the largest `Cookie` header
/// latchkey reads (16 KiB, answered 431 above that by the session layer):
/// room for the rest of any real browser's headers. Longer heads get 431.
pub(crate) const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How long the accept loop, at the cap, waits for the connection it asked to
/// close before it picks another (the first may have just begun a request).
const EVICTION_WAIT: Duration = Duration::from_millis(50);

/// The cap on open connections: `configured`, lowered so that it and
/// [`FD_RESERVE`] fit in the open-file limit. The soft limit is raised toward
/// the hard one first when that makes room, as Go's runtime does: a soft
/// limit of 1,024 is a leftover of `select(2)`, which latchkey does not use.
#[must_use]
pub(crate) fn connection_cap(configured: usize) -> (usize, Option<u64>) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = u64::try_from(configured)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_RESERVE);
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if let Some(current) = soft
        && current < wanted
    {
        let target = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if target > current
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(target),
                    maximum: limit.maximum,
                },
            )
            .is_ok()
        {
            soft = Some(target);
        }
    }
    (cap_within(configured, soft), soft)
}

/// `configured`, within an open-file limit (`None`: unlimited) less the
/// reserve; a tiny limit still gets half of it. Never above `u32::MAX`,
/// the most a semaphore can count here.
fn cap_within(configured: usize, open_files: Option<u64>) -> usize {
    let room = open_files.map_or(u64::MAX, |n| n.saturating_sub(FD_RESERVE).max(n / 2));
    let room = usize::try_from(room.min(u64::from(u32::MAX))).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// Where connection tasks stand in time: milliseconds since the server
/// started, so that a connection's state fits in atomics.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(self, millis: u64) -> Instant {
        self.0 + Duration::from_millis(millis)
    }
}

/// How long a newly accepted connection is safe from being closed to make
/// room, in milliseconds: long enough for a client to send its request.
const NEW_CONNECTION_GRACE_MS: u64 = 250;

/// Not set (for [`Conn::head_since`]).
const NONE: u64 = u64::MAX;

/// One open connection, as the accept loop and its own task see it. Updated
/// by the connection's task (reads, requests) and read by the accept loop only
/// at the cap, so the fields are hints that are checked again before acting.
struct Conn {
    id: u64,
    /// When it was accepted.
    accepted: AtomicU64,
    /// The client network counted against the per-address cap; `None` for
    /// an exempt (trusted proxy) peer.
    network: Option<IpAddr>,
    clock: Clock,
    /// Requests being answered.
    busy: AtomicU32,
    /// Of those, the ones whose body has not all arrived yet: the client,
    /// not the server, holds them up, like an unfinished head.
    uploading: AtomicU32,
    /// When bytes last arrived.
    last_bytes: AtomicU64,
    /// When it last became idle (accepted, or its last answer was made).
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived, while the head is
    /// still incomplete; [`NONE`] otherwise.
    head_since: AtomicU64,
    /// Asked to close to make room.
    evicting: AtomicBool,
    evict: Notify,
}

impl Conn {
    /// Whether it may be closed to make room: nothing in progress, or only
    /// a request still waiting for its body (a slow upload holds a
    /// connection as an unfinished head does, and is treated alike).
    fn evictable(&self) -> bool {
        !self.evicting.load(Ordering::Relaxed)
            && (self.busy.load(Ordering::Relaxed) == 0
                || self.uploading.load(Ordering::Relaxed) > 0)
    }

    /// Whether it was accepted too recently to have sent anything.
    fn is_new(&self) -> bool {
        self.clock
            .now()
            .saturating_sub(self.accepted.load(Ordering::Relaxed))
            < NEW_CONNECTION_GRACE_MS
    }

    /// Since when it has waited on its client: since its last answer (or
    /// its accept), or, while a body is uploading, since the last bytes
    /// arrived. The one that has waited longest is closed first.
    fn waiting_since(&self) -> u64 {
        if self.busy.load(Ordering::Relaxed) > 0 {
            self.last_bytes.load(Ordering::Relaxed)
        } else {
            self.idle_since.load(Ordering::Relaxed)
        }
    }

    /// When this connection is to be closed, unless something happens
    /// first; `None` while busy (the request timeout bounds that).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Relaxed);
        Some(if head == NONE {
            self.clock.at(self.idle_since.load(Ordering::Relaxed)) + limits.keep_alive_timeout
        } else {
            self.clock.at(head) + limits.header_read_timeout
        })
    }

    /// Bytes arrived: an idle connection is now reading a request head.
    fn bytes_arrived(&self) {
        let now = self.clock.now();
        self.last_bytes.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    fn ask_to_close(&self) {
        self.evicting.store(true, Ordering::Relaxed);
        self.evict.notify_one();
    }
}

/// The oldest of `conns` that may be closed to make room; with `spare_new`,
/// not one just accepted (at the global cap a new connection is the likely
/// victim of the next accept, and closing it would shut out the very client
/// room is made for; within one address, the newcomer is that address's
/// own).
fn oldest_evictable<'a>(
    conns: impl Iterator<Item = &'a Arc<Conn>>,
    spare_new: bool,
) -> Option<&'a Arc<Conn>> {
    conns
        .filter(|c| c.evictable() && !(spare_new && c.is_new()))
        .min_by_key(|c| c.waiting_since())
}

/// Every open connection, by id and by client network.
struct Registry {
    clock: Clock,
    per_address: usize,
    trusted_proxies: Vec<IpNet>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    all: HashMap<u64, Arc<Conn>>,
    by_network: HashMap<IpAddr, Vec<Arc<Conn>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; should it, the maps are
        // still consistent enough to go on serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection from `peer`, first asking this client
    /// network's oldest idle connection to close when the network is at its
    /// cap; `None` (refuse it) when all of that network's connections are busy.
    fn admit(&self, peer: SocketAddr) -> Option<Arc<Conn>> {
        let ip = peer.ip().to_canonical();
        let network = (!self.trusted_proxies.iter().any(|net| net.contains(&ip)))
            .then(|| crate::client_ip::network_of(ip));
        let mut inner = self.lock();
        if let Some(network) = network
            && let Some(same) = inner.by_network.get(&network)
            && same
                .iter()
                .filter(|c| !c.evicting.load(Ordering::Relaxed))
                .count()
                >= self.per_address
        {
            let victim = oldest_evictable(same.iter(), false)?;
            tracing::debug!(%network, "connections per address at the cap: closing the longest idle");
            victim.ask_to_close();
        }
        inner.next_id += 1;
        let now = self.clock.now();
        let conn = Arc::new(Conn {
            id: inner.next_id,
            accepted: AtomicU64::new(now),
            network,
            clock: self.clock,
            busy: AtomicU32::new(0),
            uploading: AtomicU32::new(0),
            last_bytes: AtomicU64::new(now),
            idle_since: AtomicU64::new(now),
            head_since: AtomicU64::new(NONE),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        inner.all.insert(conn.id, conn.clone());
        if let Some(network) = network {
            inner
                .by_network
                .entry(network)
                .or_default()
                .push(conn.clone());
        }
        Some(conn)
    }

    fn remove(&self, conn: &Conn) {
        let mut inner = self.lock();
        inner.all.remove(&conn.id);
        if let Some(network) = conn.network
            && let Some(same) = inner.by_network.get_mut(&network)
        {
            same.retain(|c| c.id != conn.id);
            if same.is_empty() {
                inner.by_network.remove(&network);
            }
        }
    }

    /// Asks the connection that has waited longest without a request in
    /// progress to close; false when every connection is busy.
    fn evict_oldest(&self) -> bool {
        let inner = self.lock();
        let Some(victim) = oldest_evictable(inner.all.values(), true) else {
            return false;
        };
        victim.ask_to_close();
        true
    }
}

/// The connection's socket, noting when request bytes arrive.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Marks its connection busy from a request's head to its answer.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        conn.head_since.store(NONE, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0
                .idle_since
                .store(self.0.clock.now(), Ordering::Relaxed);
        }
    }
}

/// Marks its connection as waiting for a request body until it has all
/// arrived (or the request is dropped).
struct Uploading(Arc<Conn>);

impl Uploading {
    fn start(conn: Arc<Conn>) -> Self {
        conn.uploading.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        self.0.uploading.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A request body on its way in. The connection waits on its client
    /// from the moment the handler first asks for the body (not before:
    /// until then the server, say a store look-up, is what holds the
    /// request up, and `Expect: 100-continue` clients send nothing until
    /// asked) until its end.
    struct Upload {
        #[pin]
        inner: Incoming,
        conn: Arc<Conn>,
        guard: Option<Uploading>,
        done: bool,
    }
}

impl hyper::body::Body for Upload {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if this.guard.is_none() && !*this.done {
            *this.guard = Some(Uploading::start(this.conn.clone()));
        }
        let frame = this.inner.poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            *this.done = true;
            this.guard.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// One connection's service for hyper: the routes with the peer's address,
/// the connection marked busy while a request is answered.
#[derive(Clone)]
struct ConnService {
    routes: WithPeer<Routes>,
    conn: Arc<Conn>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = InRequest;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = Busy::start(self.conn.clone());
        let req = req.map(|body| {
            if hyper::body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(Upload {
                    inner: body,
                    conn: self.conn.clone(),
                    guard: None,
                    done: false,
                })
            }
        });
        InRequest {
            busy,
            inner: self.routes.clone().oneshot(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being answered; the connection is idle again once it is
    /// answered (or dropped with the connection).
    struct InRequest {
        busy: Busy,
        #[pin]
        inner: Oneshot<WithPeer<Routes>, Request>,
    }
}

impl std::future::Future for InRequest {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// What the accept loop hands every connection's task.
struct Shared {
    routes: Routes,
    http: hyper::server::conn::http1::Builder,
    limits: ConnectionLimits,
    registry: Registry,
}

/// Serves `routes` on `listener` within `limits`, with at most `cap`
/// connections open (see [`connection_cap`]), until `shutdown` completes;
/// then stops accepting, lets requests in progress finish and returns once
/// every connection is closed.
///
/// # Errors
/// None so far: failed accepts are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    limits: ConnectionLimits,
    cap: usize,
    trusted_proxies: Vec<IpNet>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // `None`, not left unset: hyper's default would warn on every connection
    // that it has no timer.
    http.header_read_timeout(None).max_buf_size(MAX_HEAD_BYTES);
    let shared = Arc::new(Shared {
        routes,
        http,
        limits,
        registry: Registry {
            clock: Clock(Instant::now()),
            per_address: limits.max_connections_per_address,
            trusted_proxies,
            inner: Mutex::new(Inner::default()),
        },
    });
    let slots = Arc::new(Semaphore::new(cap));
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = free_slot(&slots, &shared.registry) => slot,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory despite the cap: make room
                    // and wait a moment rather than spin.
                    tracing::error!(error = %e, "accepting a connection failed");
                    shared.registry.evict_oldest();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(conn) = shared.registry.admit(peer) else {
            tracing::debug!(%peer, "connection refused: every connection from its address is busy");
            continue;
        };
        tokio::spawn(connection(
            shared.clone(),
            stream,
            peer,
            conn,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    drop(stop);
    // Every connection holds a slot until it is closed.
    let _all = slots
        .acquire_many(u32::try_from(cap).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// A slot for one more connection; at the cap, the connection that has waited
/// longest without a request in progress is asked to make room.
async fn free_slot(slots: &Arc<Semaphore>, registry: &Registry) -> OwnedSemaphorePermit {
    loop {
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return slot;
        }
        if registry.evict_oldest() {
            tracing::debug!("connections at the cap: closing the longest idle");
        }
        if let Ok(Ok(slot)) =
            tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await
        {
            return slot;
        }
    }
}

/// Errors of one connection (the client went away), not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, times out, is asked to make room
/// (when no request is in progress) or, at shutdown, finishes its request.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    mut stopping: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let service = ConnService {
        routes: WithPeer::new(shared.routes.clone(), peer),
        conn: conn.clone(),
    };
    let io = TokioIo::new(Tracked {
        stream,
        conn: conn.clone(),
    });
    let http = shared.http.serve_connection(io, service);
    tokio::pin!(http);
    let limits = &shared.limits;
    // The deadline moves when the state changes (bytes arrive, a request
    // ends), which wakes nothing here. So the task also wakes every `step`:
    // a deadline set by a change at time t is t + a timeout >= t + step, so
    // it is always seen before it passes, and kept to the millisecond,
    // without costing the request path a wake-up.
    let step = limits.header_read_timeout.min(limits.keep_alive_timeout);
    let mut draining = false;
    loop {
        let now = Instant::now();
        let wake = match conn.deadline(limits) {
            Some(deadline) if deadline <= now => {
                tracing::debug!(%peer, "connection timed out");
                break;
            }
            Some(deadline) => deadline.min(now + step),
            // Busy: the request timeout ends that.
            None => now + step,
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(wake) => {}
            () = conn.evict.notified() => {
                // A request may have begun (or its body arrived) since the
                // accept loop looked.
                if conn.busy.load(Ordering::Relaxed) == 0
                    || conn.uploading.load(Ordering::Relaxed) > 0
                {
                    break;
                }
                conn.evicting.store(false, Ordering::Relaxed);
            }
            _ = stopping.changed(), if !draining => {
                draining = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
    shared.registry.remove(&conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_open_file_limit() {
        assert_eq!(cap_within(10_000, Some(1024)), 896);
        assert_eq!(cap_within(500, Some(1024)), 500);
        assert_eq!(cap_within(10_000, Some(100)), 50);
        assert_eq!(cap_within(10_000, None), 10_000);
        assert_eq!(cap_within(10_000, Some(0)), 1);
        assert_eq!(
            cap_within(usize::MAX, None),
            usize::try_from(u32::MAX).unwrap_or(usize::MAX)
        );
    }

    fn registry(per_address: usize, trusted: &[&str]) -> Registry {
        Registry {
            // Started a while ago, so that connections can be made older
            // than the grace of new ones (see `admit`).
            clock: Clock(Instant::now() - Duration::from_secs(10)),
            per_address,
            trusted_proxies: trusted.iter().map(|t| t.parse().expect("net")).collect(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Admits a connection from `peer` and makes it older than the grace
    /// of new connections.
    fn admitted(r: &Registry, peer: SocketAddr) -> Option<Arc<Conn>> {
        let conn = r.admit(peer)?;
        conn.accepted.store(0, Ordering::Relaxed);
        Some(conn)
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), 40_000)
    }

    #[test]
    fn an_address_at_its_cap_loses_its_longest_idle_connection() {
        let r = registry(2, &[]);
        let first = admitted(&r, peer("192.0.2.1")).expect("first");
        first.idle_since.store(0, Ordering::Relaxed);
        let second = admitted(&r, peer("192.0.2.1")).expect("second");
        second.idle_since.store(5, Ordering::Relaxed);
        let other = admitted(&r, peer("192.0.2.2")).expect("another address");
        let _third = admitted(&r, peer("192.0.2.1")).expect("third");
        assert!(first.evicting.load(Ordering::Relaxed));
        assert!(!second.evicting.load(Ordering::Relaxed));
        assert!(!other.evicting.load(Ordering::Relaxed));
    }

    #[test]
    fn requests_in_progress_are_never_cut_to_make_room() {
        let r = registry(1, &[]);
        let busy = admitted(&r, peer("2001:db8:1:2::1")).expect("first");
        let _request = Busy::start(busy.clone());
        assert!(
            admitted(&r, peer("2001:db8:1:2::99")).is_none(),
            "same /64, its only connection busy: refused"
        );
        assert!(!r.evict_oldest(), "nothing idle to close");
        assert!(!busy.evicting.load(Ordering::Relaxed));
        drop(_request);
        assert!(r.evict_oldest());
        assert!(busy.evicting.load(Ordering::Relaxed));
    }

    #[test]
    fn a_stalled_upload_makes_room_like_an_idle_connection_by_how_long_it_waited() {
        let r = registry(10, &[]);
        let uploading = admitted(&r, peer("192.0.2.1")).expect("first");
        let _request = Busy::start(uploading.clone());
        let body = Uploading::start(uploading.clone());
        let idle = admitted(&r, peer("192.0.2.2")).expect("second");
        // Its last bytes came before the other's last answer: it goes first.
        uploading.last_bytes.store(100, Ordering::Relaxed);
        idle.idle_since.store(200, Ordering::Relaxed);
        assert!(r.evict_oldest());
        assert!(uploading.evicting.load(Ordering::Relaxed));
        assert!(!idle.evicting.load(Ordering::Relaxed));
        // Bytes keep coming: then the idle one goes first.
        uploading.evicting.store(false, Ordering::Relaxed);
        uploading.last_bytes.store(300, Ordering::Relaxed);
        assert!(r.evict_oldest());
        assert!(idle.evicting.load(Ordering::Relaxed));
        // Once its body is in, the request is worked on: never cut.
        drop(body);
        assert!(!r.evict_oldest());
        assert!(!uploading.evicting.load(Ordering::Relaxed));
    }

    #[test]
    fn a_connection_just_accepted_is_not_closed_to_make_room() {
        let r = registry(10, &[]);
        let new = r.admit(peer("192.0.2.1")).expect("admitted");
        assert!(!r.evict_oldest(), "nothing else to close, and it is new");
        assert!(!new.evicting.load(Ordering::Relaxed));
    }

    #[test]
    fn trusted_proxies_are_not_capped_per_address() {
        let r = registry(1, &["10.0.0.0/8"]);
        let conns: Vec<_> = (0..5)
            .map(|_| admitted(&r, peer("10.1.2.3")).expect("proxy"))
            .collect();
        assert!(conns.iter().all(|c| !c.evicting.load(Ordering::Relaxed)));
        for c in &conns {
            r.remove(c);
        }
        assert!(r.lock().all.is_empty() && r.lock().by_network.is_empty());
    }

    #[test]
    fn the_deadline_follows_the_connection_state() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 10,
            max_connections_per_address: 10,
        };
        let r = registry(10, &[]);
        let c = admitted(&r, peer("192.0.2.1")).expect("admitted");
        let idle = c.deadline(&limits).expect("idle");
        assert_eq!(
            idle,
            c.clock.at(c.idle_since.load(Ordering::Relaxed)) + limits.keep_alive_timeout
        );
        c.bytes_arrived();
        let head = c.deadline(&limits).expect("reading a head");
        assert!(head < idle);
        let request = Busy::start(c.clone());
        assert_eq!(c.deadline(&limits), None, "busy: the request timeout rules");
        c.bytes_arrived();
        drop(request);
        assert_eq!(c.head_since.load(Ordering::Relaxed), NONE);
        assert!(c.deadline(&limits).is_some());
    }
}
