//! One connection's life on the server: what it has in flight (requests, until their response
//! bodies end), since when it is idle, the bounds on its requests' bodies, and when it must
//! close (shutdown, idle too long, or to make room). The accept loop and the serving threads in
//! `lib.rs` use it; nothing here reads the peer's address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::ServeLimits;

/// How often a connection closed while a request was in flight looks again whether the
/// request is done.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the server knows of one open connection: whether it is busy, since when it is idle,
/// and how to ask it to close. Never its peer's address.
pub(crate) struct ConnectionState {
    /// Requests in flight, counted until their response body is done.
    in_flight: AtomicU32,
    /// Milliseconds since the server's start when it last became idle (opened, or its last
    /// request ended).
    idle_since_ms: AtomicU64,
    /// Whether it has started a request yet (a fresh one gets the shorter first timeout).
    served: AtomicBool,
    close: Notify,
}

/// Every open connection, so that the accept loop can close the idlest when slots run out.
pub(crate) struct Connections {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A number for the next connection accepted: numbers follow the order of accepting.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new connection; it is forgotten when the returned guard drops.
    pub(crate) fn open(self: &Arc<Self>, id: u64) -> (Arc<ConnectionState>, Registered) {
        let state = Arc::new(ConnectionState {
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            served: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.lock().insert(id, Arc::clone(&state));
        (
            state,
            Registered {
                connections: Arc::clone(self),
                id,
            },
        )
    }

    /// Asks the connection idle longest (none in flight) to close, to free a slot: whether
    /// there was one. O(open connections), and only when every slot is taken.
    pub(crate) fn close_idlest(&self) -> bool {
        let open = self.lock();
        // Idle since longest; among those idle since the same millisecond, the oldest.
        let idlest = open
            .iter()
            .filter(|(_, state)| state.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(id, state)| (state.idle_since_ms.load(Ordering::Relaxed), **id))
            .map(|(_, state)| state);
        match idlest {
            Some(state) => {
                state.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from [`Connections`] when it ends.
pub(crate) struct Registered {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

/// A request in flight on a connection, until its response body is done or dropped.
struct Busy {
    state: Arc<ConnectionState>,
    connections: Arc<Connections>,
}

impl Busy {
    fn enter(state: &Arc<ConnectionState>, connections: &Arc<Connections>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state
            .served
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Self {
            state: Arc::clone(state),
            connections: Arc::clone(connections),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state
            .idle_since_ms
            .store(self.connections.now_ms(), Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that must arrive in full by a deadline, and whose bytes count against the
/// server's budget for bodies in flight until it is dropped.
struct TimedBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

/// Why the server ended a request's body early (the error its reader gets; find it with
/// [`body_refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefused {
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("the server is receiving as many request bodies as it can hold; try again shortly")]
    ServerFull,
}

/// The [`BodyRefused`] behind a body-reading error, if the server ended the body.
pub fn body_refusal(error: &(dyn std::error::Error + 'static)) -> Option<BodyRefused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<BodyRefused>() {
            return Some(*refused);
        }
        current = error.source();
    }
    None
}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    match Arc::clone(&this.budget).try_acquire_many_owned(bytes) {
                        Ok(permit) => match &mut this.held {
                            Some(held) => held.merge(permit),
                            None => this.held = Some(permit),
                        },
                        Err(_) => return Poll::Ready(Some(Err(Box::new(BodyRefused::ServerFull)))),
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyRefused::TimedOut)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The app, counting each request against its connection for as long as its response lasts,
/// with each request's body held to [`ServeLimits::body_read_timeout`].
#[derive(Clone)]
pub(crate) struct Tracked {
    pub(crate) app: axum::Router,
    pub(crate) state: Arc<ConnectionState>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) body_read_timeout: Duration,
    pub(crate) body_budget: Arc<Semaphore>,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Tracked {
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let busy = Busy::enter(&self.state, &self.connections);
        let deadline = Box::pin(tokio::time::sleep(self.body_read_timeout));
        let budget = Arc::clone(&self.body_budget);
        let request = request.map(|inner| TimedBody {
            inner,
            deadline,
            budget,
            held: None,
        });
        let response = tower::ServiceExt::oneshot(self.app.clone(), request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _held_until_the_body_ends = &busy;
                    frame
                }))
            }))
        })
    }
}

/// What a connection's task watches besides the connection itself.
pub(crate) struct Watch {
    pub(crate) state: Arc<ConnectionState>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) limits: ServeLimits,
}

impl Watch {
    /// When the connection will have been idle too long, if it stays idle: `None` while a
    /// request is in flight.
    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        if self.state.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let allowed = if self.state.served.load(std::sync::atomic::Ordering::Relaxed) {
            self.limits.idle_timeout
        } else {
            self.limits.first_request_timeout
        };
        let idle_for = Duration::from_millis(
            self.connections
                .now_ms()
                .saturating_sub(self.state.idle_since_ms.load(Ordering::Relaxed)),
        );
        Some(tokio::time::Instant::now() + allowed.saturating_sub(idle_for))
    }

    /// Resolves when the connection should close: the server is shutting down, it was asked
    /// to make room, or it has been idle too long.
    pub(crate) async fn close_wanted(&mut self) -> &'static str {
        loop {
            if *self.shutdown.borrow_and_update() {
                return "shutdown";
            }
            // While busy, look again after the idle timeout; a request ending resets the clock.
            let wake = self
                .idle_deadline()
                .unwrap_or_else(|| tokio::time::Instant::now() + self.limits.idle_timeout);
            tokio::select! {
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        return "shutdown";
                    }
                }
                () = self.state.close.notified() => return "making room",
                () = tokio::time::sleep_until(wake) => {
                    if self
                        .idle_deadline()
                        .is_some_and(|deadline| deadline <= tokio::time::Instant::now())
                    {
                        return "idle";
                    }
                }
            }
        }
    }
}

/// Runs a connection until it ends. When `watch` wants it closed, asks it to close gracefully
/// (HTTP/1 stops keep-alive, HTTP/2 sends GOAWAY and lets open streams finish): on shutdown
/// it then drains; closed for being idle or to make room, it is dropped as soon as it has no
/// request in flight (a peer that never answers HTTP/2's closing ping cannot keep its slot).
pub(crate) async fn drive<I>(
    connection: auto::UpgradeableConnection<'_, I, TowerToHyperService<Tracked>, TokioExecutor>,
    watch: &mut Watch,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::pin!(connection);
    let reason = tokio::select! {
        result = connection.as_mut() => return result,
        reason = watch.close_wanted() => reason,
    };
    tracing::debug!(reason, "closing a connection");
    connection.as_mut().graceful_shutdown();
    if reason == "shutdown" {
        // Open requests drain; the server bounds the whole drain.
        return connection.await;
    }
    // One more turn, so that what the close queued (a GOAWAY) is written out.
    let turned = std::future::poll_fn(|cx| match connection.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(Some(result)),
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    if let Some(result) = turned {
        return result;
    }
    loop {
        if watch.state.in_flight.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        // A request that was already in flight finishes first.
        if let Ok(result) = tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await {
            return result;
        }
    }
}
