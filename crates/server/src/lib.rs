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

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
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
    stream: std::net::TcpStream,
    permit: OwnedSemaphorePermit,
    watcher: hyper_util::server::graceful::Watcher,
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
) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (connections, mut incoming) = mpsc::unbounded_channel::<Handoff>();
    let open = Arc::new(AtomicUsize::new(0));
    let app = app.clone();
    let tls = tls.cloned();
    let open_by_thread = Arc::clone(&open);
    let thread = std::thread::Builder::new()
        .name(format!("gondola-http-{index}"))
        .spawn(move || {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
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
                    let service = TowerToHyperService::new(app.clone());
                    let builder = Arc::clone(&builder);
                    let tls = tls.clone();
                    let watcher = handoff.watcher;
                    let permit = handoff.permit;
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _open = open;
                        serve_connection(stream, service, &builder, tls, watcher, limits).await;
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
    service: TowerToHyperService<axum::Router>,
    builder: &auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    watcher: hyper_util::server::graceful::Watcher,
    limits: ServeLimits,
) {
    let result = match tls {
        None => {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watcher.watch(connection.into_owned()).await
        }
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watcher.watch(connection.into_owned()).await
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
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let threads = match limits.threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        threads => threads,
    };
    let workers = (0..threads)
        .map(|index| start_worker(index, &app, tls.as_ref(), limits))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(app);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
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
        let handoff = Handoff {
            stream,
            permit,
            watcher: graceful.watcher(),
        };
        if worker.connections.send(handoff).is_err() {
            // The thread is gone (it only ends when its queue closes, so this is a panic there).
            worker.open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("a serving thread stopped; connection dropped");
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
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
