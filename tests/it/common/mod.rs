//! Shared test harness: every test gets its own server on port 0 over its
//! own temporary database, and a client that keeps cookies and does not
//! follow redirects.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod browser;
pub mod process;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, header};
use serde_json::Value;
use tempfile::TempDir;

/// A strong password that passes the rules.
pub const PASSWORD: &str = "correct-tangerine-77-orbit";
/// Another strong password.
pub const OTHER_PASSWORD: &str = "velvet-compass-19-harbor";
/// The secret every test server uses.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: Arc<TempDir>,
    pub env: Vec<(String, String)>,
    pub client: Client,
    pub jar: Arc<Jar>,
    pub setup_link: Option<String>,
    pub auth: latchkey::Auth,
    /// The server's clock: a test moves it forward instead of sleeping.
    pub clock: Arc<latchkey::clock::AdjustableClock>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn client() -> (Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// The environment of a test server: cheap argon2 so that tests run fast
/// (the production parameters have their own tests), a fixed secret, and a
/// database in a temporary directory.
pub fn base_env(dir: &TempDir) -> Vec<(String, String)> {
    let db = dir.path().join("latchkey.db");
    [
        ("LATCHKEY_BIND", "127.0.0.1:0".to_owned()),
        (
            "LATCHKEY_DATABASE_URL",
            format!("sqlite://{}", db.display()),
        ),
        ("LATCHKEY_SECRET", SECRET.to_owned()),
        ("LATCHKEY_ARGON2_MEMORY_KIB", "1024".to_owned()),
        ("LATCHKEY_ARGON2_ITERATIONS", "1".to_owned()),
        // Refused sign-ins are answered at once here; the delay has its own
        // test.
        ("LATCHKEY_REFUSAL_DELAY", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// A server with extra `LATCHKEY_*` settings on top of [`base_env`].
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut env = base_env(&dir);
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        Self::start(dir, env).await
    }

    /// Starts a server on an existing directory and environment (a restart).
    pub async fn start(dir: Arc<TempDir>, env: Vec<(String, String)>) -> Self {
        Self::start_with_clock(dir, env, Arc::default()).await
    }

    /// Like [`TestApp::start`], on a clock that other servers may share.
    pub async fn start_with_clock(
        dir: Arc<TempDir>,
        env: Vec<(String, String)>,
        clock: Arc<latchkey::clock::AdjustableClock>,
    ) -> Self {
        // `LATCHKEY_CONFIG` names the file, as for the binary.
        let file = env
            .iter()
            .find(|(k, _)| k == "LATCHKEY_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        let config = latchkey::Config::load_from(file.as_deref(), env.clone()).unwrap();
        let app = latchkey::Application::build_with_clock(config, clock.clone())
            .await
            .unwrap();
        let addr = app.local_addr();
        let setup_link = app.setup_link().map(str::to_owned);
        let auth = app.auth().clone();
        let server = tokio::spawn(async move {
            app.run_until_stopped().await.unwrap();
        });
        let (client, jar) = client();
        Self {
            addr,
            base: format!("http://{addr}"),
            dir,
            env,
            client,
            jar,
            setup_link,
            auth,
            clock,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("latchkey.db")
    }

    /// A request with the app's own cookie-keeping client.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Response {
        self.request(Method::GET, path)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.request(Method::POST, path)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .header(header::ACCEPT, "application/json")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs the real `latchkey` binary with this server's configuration.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&self.env, args, stdin).await
    }

    /// [`TestApp::cli`], which must succeed.
    pub async fn cli_ok(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let out = self.cli(args, stdin).await;
        assert!(
            out.status.success(),
            "latchkey {}: {}",
            args.join(" "),
            stderr(&out)
        );
        out
    }

    /// Creates a user through the CLI (as an administrator would).
    pub async fn add_user(&self, name: &str, password: &str, roles: &[&str]) {
        add_user(&self.env, name, password, roles).await;
    }

    /// Signs in with JSON; returns the response.
    pub async fn login_json(&self, name: &str, password: &str) -> Response {
        self.post_json(
            "/login",
            &serde_json::json!({ "username": name, "password": password }),
        )
        .await
    }

    /// Signs in and returns the session's CSRF token; panics unless it worked.
    pub async fn sign_in(&self, name: &str, password: &str) -> String {
        let r = self.login_json(name, password).await;
        assert_eq!(r.status(), StatusCode::OK, "login of {name} failed");
        let body: Value = r.json().await.unwrap();
        body["csrf_token"].as_str().unwrap().to_owned()
    }

    /// The session cookie the client holds, if any.
    pub fn session_cookie(&self) -> Option<String> {
        cookie_named(&self.jar, &self.base, "latchkey")
    }

    /// Loads the profile once, so that the server caches the session, and
    /// checks that it did: what follows then tests the cache's invalidation.
    pub async fn warm_cache(&self) {
        // The server's own writes (the login) reach its SQLite file watcher a
        // moment later and may empty the cache once; ask until it holds.
        for _ in 0..50 {
            assert_eq!(self.profile_status().await, StatusCode::OK);
            if !self.auth.cache().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the session never stayed cached");
    }

    /// The status of `GET /profile` as a JSON client.
    pub async fn profile_status(&self) -> StatusCode {
        self.get_json("/profile").await.status()
    }

    /// `GET /profile` turns 401 within [`FEED_BOUND`] (after a change made
    /// by another process, such as the CLI).
    pub async fn signed_out_within_the_feed_bound(&self, what: &str) {
        within_the_feed_bound(what, StatusCode::OK, StatusCode::UNAUTHORIZED, || {
            self.profile_status()
        })
        .await;
    }
}

/// Writes users straight into the SQLite database at `db`, each with the
/// key latchkey has always given its name ([`latchkey::internals::key_of`])
/// and the password hash given: as an import or an older version leaves
/// them, whatever today's rules for new names and hashes say.
pub async fn plant_users(db: &std::path::Path, users: &[(&str, String)]) {
    let url = format!("sqlite://{}", db.display());
    let stores = latchkey::store::Stores::open(&url).await.unwrap();
    for (name, hash) in users {
        stores
            .users
            .create_user(latchkey::store::NewUser {
                username: (*name).to_owned(),
                username_key: latchkey::internals::key_of(name),
                password_hash: hash.clone(),
                roles: vec![],
                display_name: None,
                email: None,
            })
            .await
            .unwrap();
    }
}

pub fn cookie_named(jar: &Jar, base: &str, name: &str) -> Option<String> {
    let url = base.parse().unwrap();
    let header = jar.cookies(&url)?;
    header.to_str().unwrap().split("; ").find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// How long a change made by another process (the CLI, or the other
/// instance) may take to reach an instance's session cache: it travels
/// through the change feed, asynchronously (the README's caveat). Usually
/// well under a millisecond; on a loaded 2-core machine it has taken tens
/// of milliseconds. The assertions below wait this long at most.
pub const FEED_BOUND: Duration = Duration::from_secs(2);

/// Asks `status` until it answers `expected`, for at most [`FEED_BOUND`];
/// any answer but `expected` or `before` fails at once.
pub async fn within_the_feed_bound<F: Future<Output = StatusCode>>(
    what: &str,
    before: StatusCode,
    expected: StatusCode,
    status: impl FnMut() -> F,
) {
    within(FEED_BOUND, what, before, expected, status).await;
}

/// Asks `status` until it answers `expected`, for at most `bound`; any
/// answer but `expected` or `before` fails at once.
pub async fn within<F: Future<Output = StatusCode>>(
    bound: Duration,
    what: &str,
    before: StatusCode,
    expected: StatusCode,
    mut status: impl FnMut() -> F,
) {
    let start = std::time::Instant::now();
    loop {
        let now = status().await;
        if now == expected {
            return;
        }
        assert_eq!(now, before, "{what}");
        assert!(
            start.elapsed() < bound,
            "{what}: still {before} {bound:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asks `probe` until it says yes, for at most `bound`.
pub async fn eventually<F: Future<Output = bool>>(
    bound: Duration,
    what: &str,
    mut probe: impl FnMut() -> F,
) {
    let start = std::time::Instant::now();
    while !probe().await {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The seconds of a response's `Retry-After` header.
pub fn retry_after(r: &Response) -> u64 {
    r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A JSON sign-in request to `url` from `client`, ready to send (or to
/// take more headers).
pub fn json_login(client: &Client, url: String, name: &str, password: &str) -> RequestBuilder {
    client
        .post(url)
        .header(header::ACCEPT, "application/json")
        .json(&serde_json::json!({"username": name, "password": password}))
}

/// A raw `Cookie:` request with a given session cookie value and no jar.
pub async fn with_cookie(app: &TestApp, path: &str, value: &str) -> Response {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(path))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("latchkey={value}"))
        .send()
        .await
        .unwrap()
}

/// Creates a user with the real CLI under `env`; panics unless it worked.
pub async fn add_user(env: &[(String, String)], name: &str, password: &str, roles: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    for r in roles {
        args.extend(["--role", r]);
    }
    let out = run_cli(env, &args, Some(password)).await;
    assert!(out.status.success(), "user add failed: {}", stderr(&out));
}

pub async fn run_cli(env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
        input.write_all(b"\n").await.unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// The body of a `GET`, which must answer.
pub async fn page_text(client: &Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of a hidden form field in a page.
pub fn hidden_field(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at..];
    let value = &rest[rest.find("value=\"").unwrap() + 7..];
    value[..value.find('"').unwrap()].to_owned()
}

/// Signs in as `name` through the login form at `base` + `login` (a page
/// that must post back to `login`), as a browser would; returns the answer
/// to the form, which must be a redirect to `next`.
pub async fn sign_in_by_form(client: &Client, base: &str, login: &str, name: &str, next: &str) {
    let page = page_text(client, &format!("{base}{login}")).await;
    assert!(page.contains(&format!("action=\"{login}\"")), "{page}");
    let r = client
        .post(format!("{base}{login}"))
        .header(header::ORIGIN, base)
        .form(&[
            ("username", name),
            ("password", PASSWORD),
            ("next", next),
            ("csrf_token", &hidden_field(&page, "csrf_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(r.headers()[header::LOCATION], next);
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
