//! Real reverse proxies (nginx, Caddy, Traefik) in front of latchkey and a
//! small app, for the end-to-end tests in `tests/it/proxies.rs`.
//!
//! A [`Deployment`] is what a user would run: the proxy started from the
//! very configuration files in `deploy/` (their `{{PLACEHOLDERS}}` filled
//! in), on a loopback port with a certificate made for the test, serving
//! the portal (`auth.example.test`, latchkey) and the app
//! (`app.example.test`, `admin.example.test`: an [`Upstream`] that echoes
//! the headers it receives), with latchkey configured by
//! `deploy/access.toml`.
//!
//! Without a proxy's binary its tests skip with a message, unless
//! `LATCHKEY_TEST_REQUIRE_BACKENDS` is set (CI), where they fail.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use reqwest::cookie::Jar;
use reqwest::{Client, StatusCode};
use rustix::process::Signal;
use tempfile::TempDir;

use super::TestApp;

/// The sign-in portal's host name: latchkey, behind the proxy.
pub const PORTAL: &str = "auth.example.test";
/// The protected app's host name.
pub const APP: &str = "app.example.test";
/// The same app under a host that only users with the role `admin` reach.
pub const ADMIN: &str = "admin.example.test";
/// The domain the session cookie is shared under.
pub const COOKIE_DOMAIN: &str = "example.test";

/// How long a proxy may take to answer after it is started. Generous: it is
/// only waited out when the proxy does not come up at all.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The files in `deploy/`, compiled in so that a change to them rebuilds
/// the tests.
const ACCESS_TOML: &str = include_str!("../../../deploy/access.toml");
const NGINX_CONF: &str = include_str!("../../../deploy/nginx/latchkey.conf");
const CADDYFILE: &str = include_str!("../../../deploy/caddy/Caddyfile");
const TRAEFIK_STATIC: &str = include_str!("../../../deploy/traefik/traefik.yml");
const TRAEFIK_DYNAMIC: &str = include_str!("../../../deploy/traefik/dynamic.yml");

/// A reverse proxy the tests run for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Nginx,
    Caddy,
    Traefik,
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nginx => "nginx",
            Self::Caddy => "Caddy",
            Self::Traefik => "Traefik",
        })
    }
}

impl Proxy {
    /// The variable that names the binary, overriding the search on `PATH`.
    fn binary_env(self) -> &'static str {
        match self {
            Self::Nginx => "LATCHKEY_TEST_NGINX",
            Self::Caddy => "LATCHKEY_TEST_CADDY",
            Self::Traefik => "LATCHKEY_TEST_TRAEFIK",
        }
    }

    fn binary_name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Caddy => "caddy",
            Self::Traefik => "traefik",
        }
    }

    /// The binary, from its variable or `PATH` (and `/usr/sbin`, where
    /// Debian puts nginx, which a user's `PATH` may lack).
    fn binary(self) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(self.binary_env()) {
            return Some(PathBuf::from(path));
        }
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.push(PathBuf::from("/usr/sbin"));
        dirs.into_iter()
            .map(|dir| dir.join(self.binary_name()))
            .find(|path| path.is_file())
    }
}

/// A port that was free a moment ago on 127.0.0.1. A proxy cannot be told
/// to listen on port 0 and say where it went, so the test picks the port;
/// [`Deployment::start`] tries again with another when it was taken in
/// between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fills in `{{NAME}}` placeholders; every placeholder must be known.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        let end = text[at..].find("}}").map_or(text.len(), |e| at + e + 2);
        panic!("unknown placeholder {} in a deploy file", &text[at..end]);
    }
    text
}

/// A certificate authority made for one test, and a certificate it signed
/// for `example.test` and `*.example.test`, as PEM files.
pub struct Certs {
    /// The authority, which the test's clients trust (and nothing else).
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's public key as Chromium pins one: the base64 of the
    /// SHA-256 of its DER `SubjectPublicKeyInfo`.
    pub spki_sha256: String,
}

impl Certs {
    pub fn make(dir: &Path) -> Self {
        use base64::Engine as _;
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
            PublicKeyData as _,
        };
        use sha2::Digest as _;
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "latchkey test authority");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec![COOKIE_DOMAIN.to_owned(), format!("*.{COOKIE_DOMAIN}")])
                .unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, COOKIE_DOMAIN);
        let cert = leaf.signed_by(&key, &issuer).unwrap();

        let cert_path = dir.join("example.test.crt");
        let key_path = dir.join("example.test.key");
        // The chain, as servers send it: the certificate, then its issuer.
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let spki = sha2::Sha256::digest(key.subject_public_key_info());
        Self {
            ca_pem: ca_cert.pem(),
            cert: cert_path,
            key: key_path,
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
        }
    }
}

/// The app behind the proxy: answers every request with the method, URI
/// and headers it received, as JSON (or in a small HTML page to a browser,
/// which also says who signed in and links to the portal's sign-out page),
/// and remembers the URIs that reached it.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// The app, whose pages link to `sign_out` as a real app links to the
    /// portal's sign-out page.
    pub async fn start(sign_out: String) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let sign_out: Arc<str> = sign_out.into();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                let log = log.clone();
                let sign_out = sign_out.clone();
                async move {
                    log.lock().unwrap().push(uri.to_string());
                    echo(&method, &uri, &headers, &sign_out)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, seen, task }
    }

    /// Whether a request for `uri` (path and query, as sent) reached the app.
    pub fn saw(&self, uri: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|u| u == uri)
    }
}

fn echo(method: &Method, uri: &Uri, headers: &HeaderMap, sign_out: &str) -> Response {
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        names
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = serde_json::json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "headers": names,
    });
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        let escape = |text: &str| {
            text.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let identity = |name: &str| {
            let value = names.get(name).map(|v| v.join(", ")).unwrap_or_default();
            if value.is_empty() {
                "(none)".to_owned()
            } else {
                escape(&value)
            }
        };
        let user = identity("remote-user");
        let groups = identity("remote-groups");
        let text = escape(&serde_json::to_string_pretty(&body).unwrap());
        let sign_out = escape(sign_out);
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><title>The app</title></head>\
             <body><h1>The app</h1>\
             <dl><dt>Remote-User</dt><dd id=\"remote-user\">{user}</dd>\
             <dt>Remote-Groups</dt><dd id=\"remote-groups\">{groups}</dd></dl>\
             <p><a id=\"sign-out\" href=\"{sign_out}\">Sign out</a></p>\
             <p>What the proxy passed on:</p><pre>{text}</pre></body></html>"
        ))
        .into_response()
    } else {
        axum::Json(body).into_response()
    }
}

/// A proxy process, with its output in a file; stopped when dropped.
///
/// It stays in the test's process group, so that a Ctrl-C that stops the
/// tests stops it too.
pub struct ProxyProcess {
    child: Child,
    /// How it is stopped: nginx with SIGTERM, after which its master stops
    /// its workers (SIGKILL would leave them running, holding the port);
    /// the others, single processes, with SIGKILL (Traefik would spend
    /// seconds on a graceful stop).
    stop: Signal,
    pub log: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, self.stop);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    fn spawn(mut command: Command, stop: Signal, log: PathBuf) -> Self {
        let out = File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {command:?}: {e}"));
        Self { child, stop, log }
    }

    /// Everything the proxy has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

/// A proxy in front of latchkey and the app, all on loopback.
pub struct Deployment {
    pub proxy: Proxy,
    /// The proxy's TLS port, for every host name.
    pub port: u16,
    pub latchkey: TestApp,
    pub upstream: Upstream,
    process: ProxyProcess,
    ca_pem: String,
    spki_sha256: String,
    dir: TempDir,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "--- {} output ---\n{}--- end of {} output ---",
                self.proxy,
                self.process.output(),
                self.proxy
            );
        }
    }
}

impl Deployment {
    /// Starts latchkey, the app and `proxy`, and waits until the proxy
    /// answers for the portal and the app; `None` (after a message) when
    /// the proxy is not installed and backends are not required.
    pub async fn start(proxy: Proxy) -> Option<Self> {
        Self::start_with(proxy, &[]).await
    }

    /// [`Deployment::start`] with extra `LATCHKEY_*` settings.
    pub async fn start_with(proxy: Proxy, settings: &[(&str, &str)]) -> Option<Self> {
        let Some(binary) = proxy.binary() else {
            crate::support::skip(
                &format!("{proxy} proxy"),
                &format!(
                    "no `{}` on PATH; set {}",
                    proxy.binary_name(),
                    proxy.binary_env()
                ),
            );
            return None;
        };
        // The port is picked before the proxy binds it; another process may
        // take it in between, and then the whole deployment starts again
        // (latchkey's public URL names the port).
        for _ in 0..3 {
            match Self::try_start(proxy, &binary, settings).await {
                Ok(deployment) => return Some(deployment),
                Err(Taken(output)) => {
                    eprintln!("{proxy}: the port was taken, trying another:\n{output}");
                }
            }
        }
        panic!("{proxy}: three ports in a row were taken before the proxy bound them");
    }

    async fn try_start(
        proxy: Proxy,
        binary: &Path,
        settings: &[(&str, &str)],
    ) -> Result<Self, Taken> {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::make(dir.path());
        let port = free_port();
        // The app's "Sign out", as a real app links it: the portal's
        // sign-out page, coming back to the app's front page.
        let app_root = format!("https://{APP}:{port}/");
        let sign_out = format!(
            "https://{PORTAL}:{port}/logout?rd={}",
            percent_encoding::utf8_percent_encode(&app_root, percent_encoding::NON_ALPHANUMERIC)
        );
        let upstream = Upstream::start(sign_out).await;

        let access = dir.path().join("access.toml");
        std::fs::write(&access, ACCESS_TOML).unwrap();
        let public = format!("https://{PORTAL}:{port}");
        let mut env = vec![
            ("LATCHKEY_CONFIG", access.to_str().unwrap()),
            ("LATCHKEY_PUBLIC_URL", public.as_str()),
            ("LATCHKEY_COOKIE_DOMAIN", COOKIE_DOMAIN),
            // The proxy connects from 127.0.0.1: its X-Forwarded-For is
            // believed (clients come from other loopback addresses).
            ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1"),
        ];
        env.extend_from_slice(settings);
        let latchkey = TestApp::spawn_with(&env).await;

        let port_text = port.to_string();
        let latchkey_addr = latchkey.addr.to_string();
        let app_addr = upstream.addr.to_string();
        let values = [
            ("PORT", port_text.as_str()),
            ("CERT", certs.cert.to_str().unwrap()),
            ("KEY", certs.key.to_str().unwrap()),
            ("LATCHKEY", latchkey_addr.as_str()),
            ("APP", app_addr.as_str()),
        ];
        let command = match proxy {
            Proxy::Nginx => nginx(binary, dir.path(), &values),
            Proxy::Caddy => caddy(binary, dir.path(), &values),
            Proxy::Traefik => traefik(binary, dir.path(), &values),
        };
        let stop = match proxy {
            Proxy::Nginx => Signal::TERM,
            Proxy::Caddy | Proxy::Traefik => Signal::KILL,
        };
        let process = ProxyProcess::spawn(command, stop, dir.path().join("proxy.log"));
        let mut deployment = Self {
            proxy,
            port,
            latchkey,
            upstream,
            process,
            ca_pem: certs.ca_pem,
            spki_sha256: certs.spki_sha256,
            dir,
        };
        deployment.wait_until_it_answers().await?;
        Ok(deployment)
    }

    /// Asks through the proxy until the portal's health check and a public
    /// page of the app answer 200: the proxy listens, has its routes (Traefik
    /// loads them after it opens its port) and reaches latchkey and the app.
    async fn wait_until_it_answers(&mut self) -> Result<(), Taken> {
        let (client, _) = self.client();
        let probes = [self.portal("/healthz"), self.url(APP, "/public/ready")];
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let output = self.process.output();
            if output.contains("ddress already in use") {
                return Err(Taken(output));
            }
            if let Some(status) = self.process.exited() {
                panic!(
                    "{} exited ({status}) before it answered:\n{output}",
                    self.proxy
                );
            }
            let mut ready = true;
            for probe in &probes {
                match client.get(probe).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {}
                    Ok(r) => {
                        last = format!("{probe}: {}", r.status());
                        ready = false;
                    }
                    Err(e) => {
                        last = format!("{probe}: {e}");
                        ready = false;
                    }
                }
            }
            if ready {
                return Ok(());
            }
            assert!(
                start.elapsed() < START_DEADLINE,
                "{} did not answer within {START_DEADLINE:?} (last: {last}):\n{output}",
                self.proxy
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `https://{host}:{port}{path}`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    /// latchkey's public URL: the portal, through the proxy.
    pub fn public_url(&self) -> String {
        format!("https://{PORTAL}:{}", self.port)
    }

    /// A page of the portal.
    pub fn portal(&self, path: &str) -> String {
        self.url(PORTAL, path)
    }

    /// A client of the proxy, as a browser is: it keeps cookies, does not
    /// follow redirects, trusts only the test's authority, and finds every
    /// host name at the proxy's loopback port.
    pub fn client(&self) -> (Client, Arc<Jar>) {
        let jar = Arc::new(Jar::default());
        let client = self
            .client_builder()
            .cookie_provider(jar.clone())
            .build()
            .unwrap();
        (client, jar)
    }

    /// A client like [`Deployment::client`] that connects from `from`, a
    /// loopback address other than the proxy's own 127.0.0.1.
    pub fn client_from(&self, from: std::net::Ipv4Addr) -> Client {
        self.client_builder()
            .local_address(Some(from.into()))
            .build()
            .unwrap()
    }

    /// A client like [`Deployment::client`] without a cookie jar, for
    /// replaying a `Cookie` header by hand.
    pub fn bare_client(&self) -> Client {
        self.client_builder().build().unwrap()
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        let here = SocketAddr::from(([127, 0, 0, 1], self.port));
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only([ca])
            .resolve(PORTAL, here)
            .resolve(APP, here)
            .resolve(ADMIN, here)
            .timeout(Duration::from_secs(30))
    }

    /// The Chromium flags that make a browser see this deployment as a
    /// person's browser sees the real one: every `*.example.test` host name
    /// found at the proxy's loopback address (the URLs keep the port), and
    /// the test's certificate accepted.
    ///
    /// chromedriver cannot add an authority to Chromium's trust store (that
    /// is the NSS database, and `certutil` is not installed here), so the
    /// server's key is pinned instead: `--ignore-certificate-errors-spki-list`
    /// accepts a chain only when one of its certificates has that key (it
    /// needs `--user-data-dir`, which every test browser has), unlike
    /// `--ignore-certificate-errors`, which would accept any certificate.
    /// Without it Chromium stops at "Your connection is not private"
    /// (`NET::ERR_CERT_AUTHORITY_INVALID`).
    pub fn chromium_flags(&self) -> Vec<String> {
        vec![
            format!("--host-resolver-rules=MAP *.{COOKIE_DOMAIN} 127.0.0.1"),
            format!("--ignore-certificate-errors-spki-list={}", self.spki_sha256),
        ]
    }

    /// Everything the proxy has written so far.
    pub fn proxy_output(&self) -> String {
        self.process.output()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The proxy could not bind the port picked for it; its output.
struct Taken(String);

/// nginx, as the current user, in the foreground, with everything it
/// writes in `dir`: `deploy/nginx/latchkey.conf` inside an `http` block of
/// a main file that only points nginx's paths there.
fn nginx(binary: &Path, dir: &Path, values: &[(&str, &str)]) -> Command {
    std::fs::write(dir.join("latchkey.conf"), render(NGINX_CONF, values)).unwrap();
    // Started as root, nginx would run its workers as `nobody`, who cannot
    // enter the test's private directory.
    let user = if rustix::process::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    let d = dir.display();
    let main = format!(
        "{user}worker_processes 1;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/latchkey.conf;\n\
         }}\n"
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, main).unwrap();
    let mut command = Command::new(binary);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {d}/nginx.pid; error_log stderr notice;"
        ));
    command
}

/// Caddy with `deploy/caddy/Caddyfile`; its data and configuration
/// directories in `dir`.
fn caddy(binary: &Path, dir: &Path, values: &[(&str, &str)]) -> Command {
    let file = dir.join("Caddyfile");
    std::fs::write(&file, render(CADDYFILE, values)).unwrap();
    let mut command = Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    command
}

/// Traefik with `deploy/traefik/traefik.yml` and `dynamic.yml`.
fn traefik(binary: &Path, dir: &Path, values: &[(&str, &str)]) -> Command {
    let dynamic = dir.join("dynamic.yml");
    std::fs::write(&dynamic, render(TRAEFIK_DYNAMIC, values)).unwrap();
    let mut all = values.to_vec();
    all.push(("DYNAMIC", dynamic.to_str().unwrap()));
    let file = dir.join("traefik.yml");
    std::fs::write(&file, render(TRAEFIK_STATIC, &all)).unwrap();
    let mut command = Command::new(binary);
    command.arg(format!("--configFile={}", file.display()));
    command.env("HOME", dir);
    command
}
