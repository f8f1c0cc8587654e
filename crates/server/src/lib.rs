//! HTTP serving for the gateway and the provider: the accept loop, a bound on connections,
//! `TCP_NODELAY` (streamed tokens must not wait for Nagle), optional TLS with rustls, and a
//! graceful shutdown that drains open requests for a bounded time.
//!
//! Connections are served thread per core: each serving thread runs its own single-threaded
//! runtime, and the accept loop hands every new connection to the thread with the fewest open.
//! A request then runs start to finish on one thread, with no wake-up of another worker at each
//! await (on a multi-threaded runtime those hand-offs cost more than the request's own work:
//! about 0.15 ms per request through gateway and provider). [`PerThread`] gives each serving
//! thread its own HTTP client, so that the connections a request uses are driven by the same
//! thread too.
//!
//! It never reads or keeps the peer's address: nothing downstream can log what it never had.
//! Fairness between clients therefore cannot go by address; it goes by what a connection
//! does. A connection with no request in flight is idle, and idle connections are what gets
//! closed: one that sends nothing within [`ServeLimits::first_request_timeout`], one that
//! sits between requests past [`ServeLimits::idle_timeout`] (HTTP/1 keep-alive and HTTP/2
//! alike), and, when every connection slot is taken, the one idle longest, so that a flood of
//! silent connections cannot lock out a client that has something to ask.

mod connection;

pub use connection::{BodyRefused, body_refusal};
use connection::{ConnectionState, Connections, Registered, Tracked, Watch, drive};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
pub use tokio_rustls::TlsAcceptor;

/// Bounds on what clients can hold open.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Open connections at once; further clients wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// A client has this long to finish its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// A client has this long to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// A request's body must arrive in full within this long of its start; a slower upload
    /// ends with an error (it holds a slot and the memory read so far).
    pub body_read_timeout: Duration,
    /// Bytes of request bodies being received at once, over all connections; a body that
    /// would go past it ends with an error (a 503 to its client). Each route bounds its own
    /// body too; this bounds them together.
    pub max_body_bytes_in_flight: usize,
    /// A new connection has this long to start its first request; one that sends nothing is
    /// closed.
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1 keep-alive and
    /// HTTP/2 alike).
    pub idle_timeout: Duration,
    /// HTTP/2 pings go out after this much silence, and a peer that does not answer one within
    /// the same time is gone.
    pub http2_keep_alive: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// On shutdown, open requests (including streams) get this long to finish.
    pub drain_timeout: Duration,
    /// Threads that serve connections (each a single-threaded runtime); 0 means one per CPU.
    pub threads: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            // 2 MiB at 100 KiB/s, a slow mobile uplink, takes 20 s.
            body_read_timeout: Duration::from_secs(30),
            // 256 chat bodies of the largest size at once.
            max_body_bytes_in_flight: 512 * 1024 * 1024,
            // Clients open a connection to send on it: ten seconds covers a slow start.
            first_request_timeout: Duration::from_secs(10),
            // nginx's keep-alive default is 75 s; a minute keeps a chatting client's connection.
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive: Duration::from_secs(20),
            // A page opens a handful of streams; 256 leaves room without letting one
            // connection hold the server's capacity.
            http2_max_concurrent_streams: 256,
            drain_timeout: Duration::from_secs(10),
            threads: 0,
        }
    }
}

/// A value per thread, made on first use by each thread: above all an HTTP client, whose pooled
/// connections are then opened and driven by the serving thread that uses them.
pub struct PerThread<T: Send> {
    make: Box<dyn Fn() -> T + Send + Sync>,
    values: thread_local::ThreadLocal<T>,
}

impl<T: Send> PerThread<T> {
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            make: Box::new(make),
            values: thread_local::ThreadLocal::new(),
        }
    }

    /// This thread's value.
    pub fn get(&self) -> &T {
        self.values.get_or(|| (self.make)())
    }
}

impl<T: Send> std::fmt::Debug for PerThread<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PerThread")
    }
}

/// How the per-thread HTTP clients (to providers, to upstream engines) connect.
#[derive(Debug, Clone, Copy)]
pub struct HttpClientSettings {
    /// Time to open a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response, if any.
    pub read_timeout: Option<Duration>,
    /// Idle connections kept per host, so requests skip the TCP handshake (reqwest's default
    /// when `None`).
    pub max_idle_per_host: Option<usize>,
}

/// One HTTP client per serving thread, made with `settings`: `TCP_NODELAY` (streamed tokens
/// must not wait), and never through an environment proxy (traffic to providers and engines
/// goes straight to them). A client that cannot be built is an error here, at the start; a
/// thread whose own build fails later (it would have failed here first) shares this one.
pub fn http_clients(settings: HttpClientSettings) -> std::io::Result<PerThread<reqwest::Client>> {
    let build = move || {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .no_proxy();
        if let Some(timeout) = settings.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        if let Some(idle) = settings.max_idle_per_host {
            builder = builder.pool_max_idle_per_host(idle);
        }
        builder.build()
    };
    let first = build().map_err(std::io::Error::other)?;
    Ok(PerThread::new(move || {
        build().unwrap_or_else(|_| first.clone())
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate chain {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the TLS certificate and key do not fit together: {0}")]
    Config(String),
}

/// Makes ring the process's TLS crypto provider (for HTTPS clients as well as servers). Safe to
/// call more than once.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a TLS acceptor from PEM files (certificate chain and private key).
pub fn tls_acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificates = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::Certificate {
            path: cert_path.display().to_string(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_path.display().to_string(),
            reason: "no certificate found in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| TlsError::Key {
        path: key_path.display().to_string(),
        reason: error.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| TlsError::Config(error.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .map_err(|error| TlsError::Config(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A connection on its way to a serving thread. Connections are bounded by the semaphore whose
/// permit travels with them, so the hand-off queue is too.
struct Handoff {
    /// Registered by the accept loop, so that the order of connections is the order of
    /// accepting, whichever thread gets to each first.
    state: Arc<ConnectionState>,
    registered: Registered,
    stream: std::net::TcpStream,
    permit: OwnedSemaphorePermit,
    /// Turns true when the server shuts down.
    shutdown: watch::Receiver<bool>,
}

/// One serving thread, as the accept loop sees it.
struct Worker {
    connections: mpsc::UnboundedSender<Handoff>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Decrements a worker's count of open connections when its connection ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn start_worker(
    index: usize,
    app: &axum::Router,
    tls: Option<&TlsAcceptor>,
    limits: ServeLimits,
    open_connections: &Arc<Connections>,
    body_budget: &Arc<Semaphore>,
) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (connections, mut incoming) = mpsc::unbounded_channel::<Handoff>();
    let open = Arc::new(AtomicUsize::new(0));
    let app = app.clone();
    let tls = tls.cloned();
    let open_by_thread = Arc::clone(&open);
    let open_connections = Arc::clone(open_connections);
    let body_budget = Arc::clone(body_budget);
    let thread = std::thread::Builder::new()
        .name(format!("gondola-http-{index}"))
        .spawn(move || {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(limits.http2_keep_alive))
                .keep_alive_timeout(limits.http2_keep_alive)
                .max_concurrent_streams(limits.http2_max_concurrent_streams);
            let builder = Arc::new(builder);
            runtime.block_on(async move {
                while let Some(handoff) = incoming.recv().await {
                    let open = Open(Arc::clone(&open_by_thread));
                    let stream = match tokio::net::TcpStream::from_std(handoff.stream) {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(%error, "could not take over a connection");
                            continue;
                        }
                    };
                    let (state, registered) = (handoff.state, handoff.registered);
                    let service = TowerToHyperService::new(Tracked {
                        app: app.clone(),
                        state: Arc::clone(&state),
                        connections: Arc::clone(&open_connections),
                        body_read_timeout: limits.body_read_timeout,
                        body_budget: Arc::clone(&body_budget),
                    });
                    let builder = Arc::clone(&builder);
                    let tls = tls.clone();
                    let shutdown = handoff.shutdown;
                    let permit = handoff.permit;
                    let connections = Arc::clone(&open_connections);
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _open = open;
                        let _registered = registered;
                        let watch = Watch {
                            state,
                            connections,
                            shutdown,
                            limits,
                        };
                        serve_connection(stream, service, &builder, tls, watch).await;
                    });
                }
            });
            // The accept loop is gone and open connections were drained (or ran out of time):
            // dropping the runtime closes what is left.
        })?;
    Ok(Worker {
        connections,
        open,
        thread,
    })
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<Tracked>,
    builder: &auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    mut watch: Watch,
) {
    let result = match tls {
        None => {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            drive(connection, &mut watch).await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(watch.limits.tls_handshake_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                handshake = handshake => match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                },
                reason = watch.close_wanted() => {
                    tracing::debug!(reason, "connection closed during its TLS handshake");
                    return;
                }
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            drive(connection, &mut watch).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(Connections::new());
    let body_budget = Arc::new(Semaphore::new(
        limits
            .max_body_bytes_in_flight
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    let (stop, stopping) = watch::channel(false);
    let threads = match limits.threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        threads => threads,
    };
    let workers = (0..threads)
        .map(|index| start_worker(index, &app, tls.as_ref(), limits, &open, &body_budget))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(app);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer_address_never_kept)) => stream,
                Err(error) => {
                    // Out of file descriptors and similar: back off briefly rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Every slot is taken and a client is waiting: the connection idle longest
                // makes room. With none idle, every connection is busy with a request, and
                // this client (and those behind it in the backlog) waits for one to end.
                open.close_idlest();
                tokio::select! {
                    () = &mut shutdown => break,
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "could not hand a connection over");
                continue;
            }
        };
        // The thread with the fewest open connections; the first such on a tie.
        let Some(worker) = workers
            .iter()
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
        else {
            break;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        let (state, registered) = open.open(open.next_id());
        let handoff = Handoff {
            state,
            registered,
            stream,
            permit,
            shutdown: stopping.clone(),
        };
        if worker.connections.send(handoff).is_err() {
            // The thread is gone (it only ends when its queue closes, so this is a panic there).
            worker.open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("a serving thread stopped; connection dropped");
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends: all slots back means all drained.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
            "open connections did not finish in time; closing them"
        );
    }
    let threads: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            drop(worker.connections);
            worker.thread
        })
        .collect();
    let _joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;

    /// Sends `GET /` on a keep-alive connection and returns the body (the serving thread's name).
    fn get(stream: &mut std::net::TcpStream, reader: &mut impl BufRead) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .expect("send");
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("length");
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(reader, &mut body).expect("body");
        String::from_utf8(body).expect("UTF-8")
    }

    #[tokio::test]
    async fn connections_spread_over_serving_threads_and_stay_on_theirs() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_owned()
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ServeLimits {
            threads: 2,
            ..ServeLimits::default()
        };
        let served = tokio::spawn(serve(listener, app, None, limits, async {
            let _ = stopped.await;
        }));
        let names = tokio::task::spawn_blocking(move || {
            let mut connections: Vec<_> = (0..2)
                .map(|_| {
                    let stream = std::net::TcpStream::connect(address).expect("connect");
                    let reader = BufReader::new(stream.try_clone().expect("clone"));
                    (stream, reader)
                })
                .collect();
            // Each connection's answers, three requests each, in turn.
            let mut names = vec![Vec::new(), Vec::new()];
            for _ in 0..3 {
                for (index, (stream, reader)) in connections.iter_mut().enumerate() {
                    names[index].push(get(stream, reader));
                }
            }
            names
        })
        .await
        .expect("client");
        for answers in &names {
            assert!(answers[0].starts_with("gondola-http-"), "{answers:?}");
            assert!(
                answers.iter().all(|name| name == &answers[0]),
                "a connection moved between threads: {answers:?}"
            );
        }
        assert_ne!(
            names[0][0], names[1][0],
            "two open connections share a thread while another has none"
        );
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn shutdown_lets_an_open_request_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (entered, mut inside) = mpsc::unbounded_channel::<()>();
        let (release, released) = tokio::sync::watch::channel(false);
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let entered = entered.clone();
                let mut released = released.clone();
                async move {
                    let _ = entered.send(());
                    let _ = released.wait_for(|released| *released).await;
                    "finished"
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, app, None, ServeLimits::default(), async {
            let _ = stopped.await;
        }));
        let client = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            get(&mut stream, &mut reader)
        });
        inside.recv().await.expect("the request arrived");
        stop.send(()).expect("stop");
        // The server is draining: it has stopped accepting but waits for the request.
        assert!(!served.is_finished());
        release.send(true).expect("release");
        assert_eq!(client.await.expect("client"), "finished");
        served.await.expect("joined").expect("served");
    }

    /// Serves `app` with `limits` on a loopback port: the address and the way to stop it.
    async fn start(
        app: axum::Router,
        limits: ServeLimits,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, app, None, limits, async {
            let _ = stopped.await;
        }));
        (address, stop, served)
    }

    /// Reads `stream` until the server closes it (or resets it), for at most five seconds:
    /// whether it did.
    async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 1024];
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    fn hello() -> axum::Router {
        axum::Router::new().route("/", axum::routing::get(|| async { "hello" }))
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_first_request_timeout() {
        let limits = ServeLimits {
            first_request_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (address, stop, served) = start(hello(), limits).await;
        let started = std::time::Instant::now();
        let mut silent = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        assert!(closed_by_server(&mut silent).await);
        assert!(started.elapsed() >= Duration::from_millis(200));
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_but_one_with_a_request_in_flight_is_not() {
        let (entered, mut inside) = mpsc::unbounded_channel::<()>();
        let (release, released) = tokio::sync::watch::channel(false);
        let app = hello().route(
            "/slow",
            axum::routing::get(move || {
                let entered = entered.clone();
                let mut released = released.clone();
                async move {
                    let _ = entered.send(());
                    let _ = released.wait_for(|released| *released).await;
                    "finished"
                }
            }),
        );
        let limits = ServeLimits {
            idle_timeout: Duration::from_millis(200),
            first_request_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (address, stop, served) = start(app, limits).await;
        // One connection asks something and then idles: it is closed.
        let idle = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            assert_eq!(get(&mut stream, &mut reader), "hello");
            let mut rest = Vec::new();
            // The server closes it: the read ends (with nothing more).
            std::io::Read::read_to_end(&mut reader, &mut rest).expect("closed");
            rest
        });
        // Another waits on a slow answer far longer than the idle timeout: it is kept.
        let busy = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
                .expect("send");
            let mut answer = String::new();
            BufReader::new(stream)
                .read_line(&mut answer)
                .expect("an answer");
            answer
        });
        inside.recv().await.expect("the slow request arrived");
        assert_eq!(idle.await.expect("idle client"), Vec::<u8>::new());
        // A silent connection opened after the slow request began is closed for idling; the
        // busy one, older than it, is still waiting for its answer.
        let mut later = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        assert!(closed_by_server(&mut later).await);
        assert!(!busy.is_finished());
        release.send(true).expect("release");
        assert!(busy.await.expect("busy client").starts_with("HTTP/1.1 200"));
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn when_every_slot_is_taken_the_connection_idle_longest_makes_room() {
        let limits = ServeLimits {
            max_connections: 2,
            ..ServeLimits::default()
        };
        let (address, stop, served) = start(hello(), limits).await;
        let mut oldest = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let mut newer = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        // Both slots are held by silent connections; a third, with a request, is served.
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            get(&mut stream, &mut reader)
        })
        .await
        .expect("client");
        assert_eq!(answer, "hello");
        assert!(closed_by_server(&mut oldest).await);
        // The newer one kept its slot: it can still be used.
        tokio::io::AsyncWriteExt::write_all(&mut newer, b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("send");
        let mut buffer = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut newer, &mut buffer)
            .await
            .expect("an answer");
        assert_eq!(&buffer, b"HTTP/1.1 200");
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn headers_that_never_finish_are_cut_off() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (address, stop, served) = start(hello(), limits).await;
        let mut slow = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET / HTTP/1.1\r\nhost: te")
            .await
            .expect("send");
        assert!(closed_by_server(&mut slow).await);
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn a_body_that_arrives_too_slowly_is_cut_off() {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let limits = ServeLimits {
            body_read_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (address, stop, served) = start(app, limits).await;
        let started = std::time::Instant::now();
        let status = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            // Ten bytes announced, one sent, the rest never.
            stream
                .write_all(b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nx")
                .expect("send");
            let mut status = String::new();
            BufReader::new(stream)
                .read_line(&mut status)
                .expect("an answer");
            status
        })
        .await
        .expect("client");
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn bodies_in_flight_together_are_bounded_and_their_bytes_come_back() {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Body| async move {
                match axum::body::to_bytes(body, usize::MAX).await {
                    Ok(bytes) => bytes.len().to_string(),
                    Err(error) => format!("{:?}", body_refusal(&error)),
                }
            }),
        );
        let limits = ServeLimits {
            max_body_bytes_in_flight: 100,
            ..ServeLimits::default()
        };
        let (address, stop, served) = start(app, limits).await;
        let post = move |length: usize| {
            tokio::task::spawn_blocking(move || {
                let mut stream = std::net::TcpStream::connect(address).expect("connect");
                let head =
                    format!("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: {length}\r\n\r\n");
                stream.write_all(head.as_bytes()).expect("send");
                stream.write_all(&vec![b'x'; length]).expect("send");
                let mut reader = BufReader::new(stream);
                let mut content_length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("header");
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        content_length = value.trim().parse().expect("length");
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; content_length];
                std::io::Read::read_exact(&mut reader, &mut body).expect("body");
                String::from_utf8(body).expect("UTF-8")
            })
        };
        assert_eq!(post(150).await.expect("client"), "Some(ServerFull)");
        // The budget is whole again afterwards: bodies within it, one after another, pass.
        for _ in 0..3 {
            assert_eq!(post(80).await.expect("client"), "80");
        }
        stop.send(()).expect("stop");
        served.await.expect("joined").expect("served");
    }

    #[test]
    fn per_thread_values_are_made_once_per_thread() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&made);
        let values = Arc::new(PerThread::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::current().id()
        }));
        assert_eq!(*values.get(), std::thread::current().id());
        assert_eq!(*values.get(), std::thread::current().id());
        let elsewhere = Arc::clone(&values);
        let other = std::thread::spawn(move || *elsewhere.get())
            .join()
            .expect("thread");
        assert_ne!(other, std::thread::current().id());
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }
}
