//! The request timeout: a request that has not been answered within
//! `LATCHKEY_REQUEST_TIMEOUT` of its headers (a body that trickles in, or
//! work that hangs) is answered 408 and its work dropped. It sits inside
//! the error-page layer, so browsers get the usual page and every answer its
//! security headers; hyper then closes the connection when the body was not
//! read to its end.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use tower::{Layer, Service};

use crate::error::AppError;

/// Answers 408 to requests that take longer than the duration.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeoutLayer(pub Duration);

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.0,
        }
    }
}

/// The service made by [`RequestTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request> for RequestTimeout<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TimeoutFuture {
            inner: self.inner.call(req),
            // A plain future rather than `tokio::time::timeout` keeps the
            // type nameable (no box per request); the timer is registered
            // only when first polled.
            sleep: tokio::time::sleep(self.timeout),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestTimeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(response) = this.inner.poll(cx) {
            return Poll::Ready(response);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => {
                tracing::info!("request timed out; answered 408");
                Poll::Ready(Ok(AppError::RequestTimeout.into_response()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
