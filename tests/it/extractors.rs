//! The library embedded in another axum app, tested in-process: the layer
//! and the extractors, with a memory store.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use latchkey::store::{MemoryStore, Stores};
use latchkey::{Auth, AuthUser, HashParams, Password, ServerSecret, Session};
use tower::ServiceExt as _;

async fn auth() -> Auth {
    with_stores(Stores::single(MemoryStore::default())).await
}

async fn with_stores(stores: Stores) -> Auth {
    Auth::builder()
        .stores(stores)
        .secret(ServerSecret::new(crate::common::SECRET).unwrap())
        .public_url("http://127.0.0.1:8080")
        .idle_timeout(Duration::from_secs(60))
        .absolute_timeout(Duration::from_secs(3600))
        .login_rate(1000)
        .refusal_delay(Duration::ZERO)
        .hash_params(HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .hash_threads(1)
        .cleanup(false)
        .build()
        .await
        .unwrap()
}

async fn hello(user: AuthUser) -> String {
    format!("hello {}", user.username)
}

async fn maybe(session: Session) -> String {
    session
        .active()
        .map_or_else(|| "anonymous".to_owned(), |a| a.username.clone())
}

fn app(auth: &Auth) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route("/maybe", get(maybe))
        .layer(auth.layer())
}

/// Signs ann in through the library and returns her cookie header value.
async fn cookie_for_ann(auth: &Auth) -> String {
    let pw = Password::new("plover-trombone-91".into());
    auth.accounts().create_user("ann", &pw, &[]).await.unwrap();
    let logged_in = auth
        .login(
            &Session::default(),
            "ann",
            &pw,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &axum::http::HeaderMap::new(),
        )
        .await
        .unwrap();
    let shown = format!("{logged_in:?}");
    assert!(!shown.contains(&logged_in.session.csrf_token), "{shown}");
    let response = axum::response::IntoResponse::into_response((logged_in, "ok"));
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn call(router: Router, path: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(path).header(header::ACCEPT, "application/json");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let res = router
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn auth_user_rejects_anonymous_requests_with_401() {
    let auth = auth().await;
    let (status, body) = call(app(&auth), "/hello", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not_authenticated"));
}

#[tokio::test]
async fn auth_user_gives_the_handler_the_signed_in_user() {
    let auth = auth().await;
    let cookie = cookie_for_ann(&auth).await;
    let (status, body) = call(app(&auth), "/hello", Some(&cookie)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello ann"));
    let (_, body) = call(app(&auth), "/maybe", Some(&cookie)).await;
    assert_eq!(body, "ann");
}

#[tokio::test]
async fn a_request_that_may_change_state_is_decided_on_the_store_not_the_cache() {
    // A memory store that nothing else writes: the cache is trusted.
    let auth = with_stores(Stores {
        feeds: Some(vec![]),
        ..Stores::single(MemoryStore::default())
    })
    .await;
    let cookie = cookie_for_ann(&auth).await;
    let router = Router::new()
        .route("/maybe", get(maybe).post(maybe).delete(maybe))
        .layer(auth.layer());
    for _ in 0..2 {
        let (_, body) = call(router.clone(), "/maybe", Some(&cookie)).await;
        assert_eq!(body, "ann");
    }
    // The session ends behind this instance's back, as if on another
    // instance whose news has not arrived yet.
    let sessions = auth.stores().sessions.list(None).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(
        auth.stores()
            .sessions
            .delete(&sessions[0].key)
            .await
            .unwrap()
    );
    assert!(!auth.cache().is_empty(), "the cache has not heard of it");
    for method in ["POST", "DELETE"] {
        let req = Request::builder()
            .method(method)
            .uri("/maybe")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(&body[..], b"anonymous", "{method}");
    }
    // Having asked the store, the instance forgets the session for reads too.
    let (_, body) = call(router, "/maybe", Some(&cookie)).await;
    assert_eq!(body, "anonymous");
}

#[tokio::test]
async fn session_is_anonymous_without_a_valid_cookie() {
    let auth = auth().await;
    let (status, body) = call(app(&auth), "/maybe", Some("latchkey=forged.value")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}

#[tokio::test]
async fn extractors_without_the_layer_fail_loudly_not_open() {
    let router = Router::new().route("/hello", get(hello));
    let (status, body) = call(router, "/hello", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("internal_error"));
}

/// A session store that counts how often it is asked.
struct Counting {
    inner: std::sync::Arc<dyn latchkey::store::SessionStore>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counting {
    fn tick(&self) {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl latchkey::store::SessionStore for Counting {
    async fn create(&self, s: &latchkey::store::SessionRecord) -> latchkey::store::StoreResult<()> {
        self.tick();
        self.inner.create(s).await
    }
    async fn load(
        &self,
        k: &latchkey::store::SessionKey,
    ) -> latchkey::store::StoreResult<Option<latchkey::store::SessionRecord>> {
        self.tick();
        self.inner.load(k).await
    }
    async fn touch(
        &self,
        k: &latchkey::store::SessionKey,
        t: i64,
    ) -> latchkey::store::StoreResult<bool> {
        self.tick();
        self.inner.touch(k, t).await
    }
    async fn rotate(
        &self,
        o: &latchkey::store::SessionKey,
        n: &latchkey::store::SessionRecord,
    ) -> latchkey::store::StoreResult<bool> {
        self.tick();
        self.inner.rotate(o, n).await
    }
    async fn delete(&self, k: &latchkey::store::SessionKey) -> latchkey::store::StoreResult<bool> {
        self.tick();
        self.inner.delete(k).await
    }
    async fn delete_user_sessions(
        &self,
        u: latchkey::store::UserId,
    ) -> latchkey::store::StoreResult<u64> {
        self.tick();
        self.inner.delete_user_sessions(u).await
    }
    async fn list(
        &self,
        u: Option<latchkey::store::UserId>,
    ) -> latchkey::store::StoreResult<Vec<latchkey::store::SessionRecord>> {
        self.tick();
        self.inner.list(u).await
    }
    async fn delete_expired(&self, a: i64, b: i64) -> latchkey::store::StoreResult<u64> {
        self.tick();
        self.inner.delete_expired(a, b).await
    }
    async fn ping(&self) -> latchkey::store::StoreResult<()> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_cached_session_costs_no_store_round_trip() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = Stores::memory();
    let stores = Stores {
        sessions: std::sync::Arc::new(Counting {
            inner: base.sessions.clone(),
            calls: calls.clone(),
        }),
        ..base
    };
    let auth = with_stores(stores).await;
    let cookie = cookie_for_ann(&auth).await;
    let after_login = calls.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        let (status, _) = call(app(&auth), "/hello", Some(&cookie)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let used = calls.load(std::sync::atomic::Ordering::SeqCst) - after_login;
    assert_eq!(used, 1, "one load for the first request, none after");
    // A revocation through this instance is seen at once.
    auth.accounts().revoke_sessions("ann").await.unwrap();
    let (status, _) = call(app(&auth), "/hello", Some(&cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A route that reports which CSRF checks pass for its request.
async fn csrf_checks(
    axum::extract::State(auth): axum::extract::State<Auth>,
    session: Session,
    headers: axum::http::HeaderMap,
) -> String {
    let token = headers
        .get("x-test-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let strict = auth
        .check_csrf(&session, &headers, token.as_deref())
        .is_ok();
    let logout = auth
        .check_logout_csrf(&session, &headers, token.as_deref())
        .is_ok();
    format!("strict={strict} logout={logout}")
}

#[tokio::test]
async fn a_token_from_before_a_role_change_is_good_only_for_signing_out() {
    let auth = auth().await;
    let cookie = cookie_for_ann(&auth).await;
    let router = Router::new()
        .route("/check", get(csrf_checks))
        .with_state(auth.clone())
        .layer(auth.layer());
    let old_token = {
        let key_cookie = cookie.clone();
        let res = Router::new()
            .route(
                "/token",
                get(|u: AuthUser| async move { u.csrf_token.clone() }),
            )
            .layer(auth.layer())
            .oneshot(
                Request::get("/token")
                    .header(header::COOKIE, &key_cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    auth.accounts()
        .change_roles("ann", &["ops".to_owned()], &[])
        .await
        .unwrap();
    // The first request after the change rotates the session: the old
    // token passes only the sign-out check.
    let res = router
        .clone()
        .oneshot(
            Request::get("/check")
                .header(header::COOKIE, &cookie)
                .header("x-test-token", &old_token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(res.headers().get(header::SET_COOKIE).is_some(), "rotated");
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    assert_eq!(body, "strict=false logout=true");
}
