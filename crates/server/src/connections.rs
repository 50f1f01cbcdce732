//! Accepting connections, with the limits a public server needs and
//! `axum::serve` does not expose: a cap on open connections, a deadline for
//! the request head, a deadline for the whole body, and an idle timeout on
//! the socket. Without them a client that sends one header line every few
//! seconds, or nothing at all, holds a connection (and its memory) forever.
//!
//! The accept loop is the one `axum::serve` runs, on hyper's own HTTP/1
//! connection builder (which has the header timeout) and hyper-util's
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use crate::error::{ApiError, ErrorCode};

/// How long a client may take, and how many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the connection's start, or the end of its previous response,
    /// until a request's headers are complete: so it is also how long an
    /// idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// From the end of the headers until the whole body has arrived.
    pub body_timeout: Duration,
    /// A read or a write on the socket that makes no progress this long
    /// closes the connection (a client that stops reading its answer, or
    /// stalls in the middle of a body).
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog
    /// until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            // Two 5 MB images as base64 over a slow mobile uplink (1 Mbit/s)
            // take about 110 s; 120 s keeps such clients working.
            body_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// resolves, then lets open connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut shutdown = pin!(shutdown);
    loop {
        // The permit is taken before accepting, so that over the cap new
        // connections wait in the kernel's backlog instead of in memory.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = http.serve_connection(socket(stream, limits.idle_timeout), service(router.clone(), peer));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection closed by a timeout or by the client ends here;
            // hyper has already answered what it could.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Accept errors are per connection (the peer left) or resource limits
/// (out of file descriptors): either way, wait a little and go on, as
/// `axum::serve` does, instead of spinning or stopping the server.
async fn accept_failed(error: &std::io::Error) {
    tracing::warn!(error = %error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The socket with its idle timeout on both directions.
fn socket(stream: TcpStream, idle: Duration) -> TokioIo<std::pin::Pin<Box<TimeoutStream<TcpStream>>>> {
    let _ = stream.set_nodelay(true);
    let mut stream = TimeoutStream::new(stream);
    stream.set_read_timeout(Some(idle));
    stream.set_write_timeout(Some(idle));
    TokioIo::new(Box::pin(stream))
}

/// The router for one connection, with the peer address every request
/// carries (the token endpoint's per-address throttle reads it).
fn service(
    router: Router,
    peer: SocketAddr,
) -> TowerToHyperService<
    impl tower::Service<Request<Incoming>, Response = Response, Error = std::convert::Infallible, Future: Send> + Clone,
> {
    TowerToHyperService::new(router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }))
}

/// Gives every request body a deadline `body_timeout` from now. A body
/// still arriving then fails, and the request is answered 408 whatever the
/// handler made of the failure. The body is not read here: a request
/// without a valid token is still refused before its body is read.
pub async fn body_deadline(
    axum::extract::State(body_timeout): axum::extract::State<Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let fired = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        axum::body::Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            fired: Arc::clone(&fired),
        })
    });
    let response = next.run(request).await;
    if fired.load(Ordering::Relaxed) {
        let message = format!("the request body did not arrive within {} s", body_timeout.as_secs());
        return ApiError::new(ErrorCode::RequestTimeout, message).into_response();
    }
    response
}

/// A body that fails at a deadline. Hand-written because tower-http's
/// `RequestBodyTimeout` restarts its clock at every frame, so a client
/// trickling a byte at a time would never reach it.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    fired: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyDeadline;

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadline))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
