//! The TCP peer's address, for the handlers that need it (login, logout,
//! setup). axum's `ConnectInfo` puts it into every request's extensions, which
//! costs a map allocation on every request; the service sets a task-local
//! once per connection instead (in its accept loop, `crate::connections`).
//! An app that mounts the pages in its own `axum::serve` provides
//! `ConnectInfo` (`into_make_service_with_connect_info::<SocketAddr>()`);
//! see [`Peer::client`] for one that does not.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

tokio::task_local! {
    static PEER: SocketAddr;
}

/// The address of the connection's other end (before any trusted proxy
/// header is considered), when the server says it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(PEER.try_with(|peer| *peer).ok().or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
        })))
    }
}

impl Peer {
    /// The client's address for throttling and the audit log: the peer, or
    /// what a trusted proxy says. Without a peer (an app served without
    /// `ConnectInfo`) the address is unknown (`::`), and only the
    /// per-account limits apply: `X-Forwarded-For` cannot be believed from
    /// a peer that is not known to be a trusted proxy, and one counter
    /// shared by every client would let anyone lock everyone out. Said once
    /// in the log, at error level.
    pub(crate) fn client(self, auth: &crate::Auth, headers: &HeaderMap) -> IpAddr {
        if let Some(peer) = self.0 {
            return auth.client_ip(peer.ip(), headers);
        }
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::error!(
                "no client address: serve the app with \
                 into_make_service_with_connect_info::<SocketAddr>(); until then sign-ins \
                 are limited per account only, not per address"
            );
        });
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    }
}

#[cfg(feature = "server")]
pub(crate) use with_peer::WithPeer;

#[cfg(feature = "server")]
mod with_peer {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::task::{Context, Poll};

    use axum::extract::Request;
    use axum::response::Response;
    use tower::Service;

    use super::PEER;

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
}
