//! The TCP peer's address, for the handlers that need it (login, logout,
//! setup). axum's `ConnectInfo` puts it into every request's extensions, which
//! costs a map allocation on every request; here it is a task-local set once
//! per connection (by the server's accept loop, `crate::connections`) and
//! read only where it is used.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::Response;
use tower::Service;

use crate::error::AppError;

tokio::task_local! {
    static PEER: SocketAddr;
}

/// The address of the connection's other end (before any trusted proxy
/// header is considered).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = AppError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        PEER.try_with(|peer| Self(*peer)).map_err(|_| {
            AppError::Internal(anyhow::anyhow!(
                "Peer extractor used outside routes::peer::WithPeer"
            ))
        })
    }
}

/// One connection's service: every request runs with the peer's address in
/// [`PEER`].
#[derive(Clone)]
pub(crate) struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S> WithPeer<S> {
    /// The service for one connection from `peer`.
    pub(crate) fn new(inner: S, peer: SocketAddr) -> Self {
        Self { inner, peer }
    }
}

impl<S> Service<Request> for WithPeer<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = tokio::task::futures::TaskLocalFuture<SocketAddr, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        PEER.scope(self.peer, self.inner.call(req))
    }
}
