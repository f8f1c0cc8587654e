//! In a cluster, a response ends only once the usage it is charged for is durable in the
//! cluster's usage queue (`economy::usage`), so a replica killed at any moment has lost no
//! usage it acknowledged.
//!
//! [`hold_until_recorded`] wraps every request in a [`Barrier`] (a task-local the request's
//! settlement records find when they start). A record that ends before the handler returns
//! (a gathered response) is waited for before the response leaves; a record that lives in the
//! response body (a stream) is waited for after the body's last chunk and before its end, which
//! HTTP marks with the last chunk of chunked encoding. So a client that read a whole response
//! was charged for it. Each wait is bounded by [`RECORDING_WAIT`]: with PostgreSQL out of reach
//! the usage is written when it returns, and the response goes on without it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use economy::usage::Recorded;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a response waits for its usage to be written.
pub(crate) const RECORDING_WAIT: Duration = Duration::from_secs(5);

tokio::task_local! {
    static BARRIER: Arc<Barrier>;
}

/// The settlement records of one request that have not ended, and the writes of those that
/// have.
#[derive(Default)]
pub(crate) struct Barrier {
    state: Mutex<Waiting>,
    changed: Notify,
}

#[derive(Default)]
struct Waiting {
    open: usize,
    recorded: Vec<Recorded>,
}

impl Barrier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A record has ended, with its usage's write if it was metered.
    pub(crate) fn close(&self, recorded: Option<Recorded>) {
        {
            let mut state = self.lock();
            state.open = state.open.saturating_sub(1);
            state.recorded.extend(recorded);
        }
        self.changed.notify_waiters();
    }

    fn open(&self) -> usize {
        self.lock().open
    }

    fn idle(&self) -> bool {
        let state = self.lock();
        state.open == 0 && state.recorded.is_empty()
    }

    /// Waits until every record has ended and its usage is durable, or `bound` passes.
    async fn wait(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (open, recorded) = {
                let mut state = self.lock();
                (state.open, std::mem::take(&mut state.recorded))
            };
            for write in recorded {
                let left = deadline.saturating_duration_since(Instant::now());
                if !write.wait(left).await {
                    tracing::warn!(
                        "a response ended before its usage was written to the cluster's queue; it is written when PostgreSQL answers"
                    );
                    return;
                }
            }
            if open == 0 {
                if self.lock().recorded.is_empty() {
                    return;
                }
                continue;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                tracing::warn!("a response ended while its settlement record was still open");
                return;
            }
        }
    }
}

/// The barrier of the request being handled, counting one more open record; `None` outside
/// [`hold_until_recorded`] (a gateway alone).
pub(crate) fn join() -> Option<Arc<Barrier>> {
    BARRIER
        .try_with(|barrier| {
            barrier.lock().open += 1;
            Arc::clone(barrier)
        })
        .ok()
}

/// The middleware: runs the request inside its barrier and holds the response's end until the
/// barrier is passed.
pub(crate) async fn hold_until_recorded(request: Request, next: Next) -> Response {
    let barrier = Arc::new(Barrier::default());
    let response = BARRIER.scope(Arc::clone(&barrier), next.run(request)).await;
    if barrier.idle() {
        return response;
    }
    if barrier.open() == 0 {
        barrier.wait(RECORDING_WAIT).await;
        return response;
    }
    // A record lives on in the body: the end of the body waits for it. Without a length the
    // body goes chunked, so its end is what the client waits for.
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let chunks = body.into_data_stream();
    let body = futures_util::stream::unfold(Some((chunks, barrier)), |step| async move {
        let (mut chunks, barrier) = step?;
        match chunks.next().await {
            Some(chunk) => Some((chunk, Some((chunks, barrier)))),
            None => {
                // Dropping the body ends the records it holds.
                drop(chunks);
                barrier.wait(RECORDING_WAIT).await;
                None
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(body))
}
