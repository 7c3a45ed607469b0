//! Headless Chromium driven through chromedriver, for end-to-end tests of
//! the real `latchkey` binary.
//!
//! A test starts its own server and its own browser, uses the page as a
//! person would, and ends with [`Browser::finish`], which saves a screenshot
//! of the last page to `target/browser-screenshots/{name}.png`:
//!
//! ```ignore
//! let Some(browser) = Browser::start().await else { return };
//! let latchkey = Latchkey::start().await;
//! browser.goto(&latchkey.url("/login")).await;
//! assert!(browser.text().await.contains("Sign in"));
//! assert_eq!(browser.axe().await, []);
//! browser.finish("login_page").await;
//! ```
//!
//! Without Chromium and chromedriver the tests skip with a message, unless
//! `LATCHKEY_TEST_REQUIRE_BACKENDS` is set (CI), where a missing browser fails them.
//! A test that panics still leaves a screenshot, `{test name}-failed.png`,
//! and never leaves a browser process behind.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, SemaphorePermit};
use url::Url;

use super::process::ServerProcess;

/// When set (CI sets it), a missing browser fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "LATCHKEY_TEST_REQUIRE_BACKENDS";
/// Overrides where the Chromium binary is looked for.
pub const CHROMIUM_ENV: &str = "LATCHKEY_TEST_CHROMIUM";
/// Overrides where the chromedriver binary is looked for.
pub const CHROMEDRIVER_ENV: &str = "LATCHKEY_TEST_CHROMEDRIVER";

/// How long any wait for the page lasts before the test fails. Generous on
/// purpose: on a loaded two-core machine Chromium can take seconds to paint,
/// and a wait only runs this long when the test is failing anyway.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The flags every browser gets. Headless as root needs `--no-sandbox`; the
/// `--disable-*` networking flags stop Chromium's own background traffic,
/// which this machine's closed network refuses (and which would slow every
/// start); `/dev/shm` is small in containers.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1024,900",
];

/// Makes `prefers-color-scheme: dark` match, as on a system set to dark mode
/// (checked with `matchMedia` by a test in `tests/browser.rs`).
pub const DARK_MODE: &str = "--force-dark-mode";

/// Chromium is heavy: on two cores, more than two at once only makes every
/// test slower and pushes waits toward their timeout.
static SLOTS: Semaphore = Semaphore::const_new(2);

thread_local! {
    /// Browsers open on this thread, that is in this test (tests run on
    /// tokio's default current-thread runtime).
    static OPEN_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A place among the browsers allowed at once. A test's second browser
/// shares its first one's place: two tests that each held one place and
/// waited for a second would wait for each other forever.
struct Slot(Option<SemaphorePermit<'static>>);

impl Slot {
    async fn take() -> Self {
        let open = OPEN_HERE.with(|n| n.replace(n.get() + 1));
        if open > 0 {
            return Self(None);
        }
        Self(Some(SLOTS.acquire().await.unwrap()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN_HERE.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// One headless Chromium with its own chromedriver and empty profile.
///
/// Dropping it kills both; [`Browser::finish`] ends it cleanly and keeps a
/// screenshot of the last page.
pub struct Browser {
    client: Client,
    session: String,
    finished: bool,
    // Dropped after `Browser::drop` has used it: it stops what is left.
    driver: Driver,
    _profile: TempDir,
    _slot: Slot,
}

impl Browser {
    /// A light-themed browser, or `None` (with a message) when Chromium or
    /// chromedriver is not installed and [`REQUIRE_ENV`] is not set.
    pub async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    /// A browser whose pages see `prefers-color-scheme: dark`.
    pub async fn start_dark() -> Option<Self> {
        Self::start_with(&[DARK_MODE]).await
    }

    /// A browser with extra Chromium flags after [`CHROMIUM_FLAGS`], e.g.
    /// `--host-resolver-rules=MAP evil.test 127.0.0.2`.
    pub async fn start_with(extra_flags: &[&str]) -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) = (
            find_binary(
                CHROMIUM_ENV,
                &["chromium", "chromium-browser", "google-chrome"],
            ),
            find_binary(CHROMEDRIVER_ENV, &["chromedriver"]),
        ) else {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none(),
                "browser tests are required ({REQUIRE_ENV} is set) but chromium/chromedriver are not installed"
            );
            // Once per test binary, and past the test harness's capture, so
            // that a passing run still says what it did not test.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: browser tests: chromium/chromedriver not installed"
                );
            });
            return None;
        };
        let slot = Slot::take().await;
        let driver = Driver::start(&chromedriver).await;
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra_flags.iter().map(|f| (*f).to_owned()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            // Keeps what the page's console says, for [`Browser::console`].
            "goog:loggingPrefs": { "browser": "ALL" },
            // Bounded, so that a page that never loads fails the test instead of hanging it.
            "timeouts": { "pageLoad": TIMEOUT.as_millis() as u64, "script": TIMEOUT.as_millis() as u64 },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{}", driver.addr))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {chromium}: {e}"));
        let session = client.session_id().await.unwrap().unwrap();
        Some(Self {
            client,
            session,
            finished: false,
            driver,
            _profile: profile,
            _slot: slot,
        })
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!(
                "{}",
                self.failure(&format!("could not open {url}: {e}")).await
            );
        }
    }

    /// The address of the page shown now.
    pub async fn current_url(&self) -> Url {
        self.client.current_url().await.unwrap()
    }

    /// The text a person sees on the page (`document.body.innerText`).
    pub async fn text(&self) -> String {
        match self
            .script("return document.body ? document.body.innerText : ''")
            .await
        {
            Value::String(text) => text,
            other => panic!("innerText was {other}"),
        }
    }

    /// The first element that matches a CSS selector, waiting for it to appear.
    pub async fn wait_for_element(&self, selector: &str) -> Element {
        let what = format!("an element matching {selector:?}");
        self.wait_until(&what, async || {
            self.client.find(Locator::Css(selector)).await.ok()
        })
        .await
    }

    /// Clicks the element that matches a CSS selector. A click that loads a
    /// page may return before it has loaded: follow it with a wait.
    pub async fn click(&self, selector: &str) {
        let element = self.wait_for_element(selector).await;
        if let Err(e) = element.click().await {
            panic!(
                "{}",
                self.failure(&format!("could not click {selector:?}: {e}"))
                    .await
            );
        }
    }

    /// Types `text` into the field that matches a CSS selector, replacing
    /// what it held.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self.wait_for_element(selector).await;
        if let Err(e) = async {
            field.clear().await?;
            field.send_keys(text).await
        }
        .await
        {
            panic!(
                "{}",
                self.failure(&format!("could not type into {selector:?}: {e}"))
                    .await
            );
        }
    }

    /// Clicks the submit button of the form that matches a CSS selector and
    /// waits until the page it leads to has loaded (also when that page has
    /// the same address, as a form shown again with an error has).
    pub async fn submit(&self, form_selector: &str) {
        let form = self.wait_for_element(form_selector).await;
        let Ok(button) = form
            .find(Locator::Css(
                "[type=submit], button:not([type]), input[type=image]",
            ))
            .await
        else {
            panic!(
                "{}",
                self.failure(&format!("the form {form_selector:?} has no submit button"))
                    .await
            )
        };
        let page = self.mark_page().await;
        if let Err(e) = button.click().await {
            panic!(
                "{}",
                self.failure(&format!("could not submit {form_selector:?}: {e}"))
                    .await
            );
        }
        self.wait_for_next_page(page).await;
    }

    /// Goes back one page in the history and waits until it is shown.
    pub async fn back(&self) {
        let page = self.mark_page().await;
        if let Err(e) = self.client.back().await {
            panic!("{}", self.failure(&format!("could not go back: {e}")).await);
        }
        self.wait_for_next_page(page).await;
    }

    /// Waits until the page's path is `path` (the query is not compared) and
    /// returns the whole address.
    pub async fn wait_for_path(&self, path: &str) -> Url {
        self.wait_for_url(&format!("the path {path}"), |url| url.path() == path)
            .await
    }

    /// Waits until the page's address satisfies `matches`; `what` names the
    /// wait in the failure message.
    pub async fn wait_for_url(&self, what: &str, matches: impl Fn(&Url) -> bool) -> Url {
        self.wait_until(what, async || {
            let url = self.client.current_url().await.ok()?;
            matches(&url).then_some(url)
        })
        .await
    }

    /// Polls `probe` until it gives a value; fails the test (with the page's
    /// address and text) after [`TIMEOUT`]. Waiting on a condition rather than
    /// sleeping keeps tests both fast and steady under load.
    pub async fn wait_until<T>(&self, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!("timed out after {TIMEOUT:?} waiting for {what}"))
                        .await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs JavaScript in the page as the body of a function and returns
    /// what it returns (a returned promise is awaited). Works under the
    /// pages' `Content-Security-Policy`, which forbids the page's own scripts
    /// but not the driver's.
    pub async fn script(&self, body: &str) -> Value {
        match self.client.execute(body, Vec::new()).await {
            Ok(value) => value,
            Err(e) => panic!("{}", self.failure(&format!("script failed: {e}")).await),
        }
    }

    /// Every cookie the page's address can see, with its attributes.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        let cookies = self.client.get_all_cookies().await.unwrap();
        cookies
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                domain: c.domain().map(str::to_owned),
                same_site: c.same_site().map(|s| s.to_string()),
                path: c.path().map(str::to_owned),
            })
            .collect()
    }

    /// The cookie named `name`, if the page's address can see it.
    pub async fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().await.into_iter().find(|c| c.name == name)
    }

    /// Saves a PNG of the viewport to `target/browser-screenshots/{name}.png`
    /// and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        save_screenshot(name, &png)
    }

    /// The serious and critical accessibility violations that axe-core finds
    /// on the page (WCAG 2.x A and AA, plus axe's best practices).
    ///
    /// axe measures contrast against white wherever no element paints a
    /// background, even when a dark `color-scheme` makes the browser paint
    /// the canvas dark (dequelabs/axe-core#3605, #4608). So that the dark
    /// theme is judged on what a person sees, the root gets the canvas
    /// colour as its own background while axe runs.
    pub async fn axe(&self) -> Vec<Violation> {
        let loaded = self.script("return typeof window.axe === 'object'").await;
        if loaded != Value::Bool(true) {
            self.script(&format!("{AXE_SOURCE}\n;return true")).await;
        }
        let found = self.script(AXE_RUN).await;
        serde_json::from_value(found.clone())
            .unwrap_or_else(|e| panic!("unexpected axe result {found}: {e}"))
    }

    /// What the page's console said since the last call (Chromium's own
    /// messages among them, e.g. a `Content-Security-Policy` refusal), one
    /// line each as `LEVEL message`.
    pub async fn console(&self) -> Vec<String> {
        match self.console_entries().await {
            Ok(lines) => lines,
            Err(e) => panic!("could not read the browser's console: {e}"),
        }
    }

    /// The console, from chromedriver's log endpoint, which fantoccini does
    /// not cover. Reading it empties it.
    async fn console_entries(&self) -> Result<Vec<String>, String> {
        let url = format!(
            "http://{}/session/{}/se/log",
            self.driver.addr, self.session
        );
        let answer: Value = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "type": "browser" }))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let entries = answer["value"]
            .as_array()
            .ok_or_else(|| format!("unexpected answer {answer}"))?;
        Ok(entries
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                )
            })
            .collect())
    }

    /// The WebDriver client, for what the helpers above do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Saves a screenshot of the page the test ends on and closes the
    /// browser. Every browser test should end here.
    pub async fn finish(mut self, name: &str) -> PathBuf {
        let path = self.screenshot(name).await;
        self.finished = true;
        // Closing the session lets Chromium shut down on its own; `Drop`
        // then only has the driver left to stop.
        let _ = self.client.clone().close().await;
        path
    }

    /// Gives the page a marker that the next page will not have, and
    /// returns it.
    async fn mark_page(&self) -> u64 {
        static PAGES: AtomicU64 = AtomicU64::new(1);
        let page = PAGES.fetch_add(1, Ordering::Relaxed);
        self.script(&format!("window.__latchkeyPage = {page}"))
            .await;
        page
    }

    /// Waits until a page without `page`'s marker has loaded. The marker
    /// lives on the `window`, which a navigation replaces; a page restored
    /// from the back-forward cache keeps its own older marker, which also
    /// differs.
    async fn wait_for_next_page(&self, page: u64) {
        let check = format!(
            "return window.__latchkeyPage !== {page} && document.readyState === 'complete'"
        );
        self.wait_until("the next page to load", async || {
            // While the old page unloads the script can fail: keep asking.
            let done = self.client.execute(&check, Vec::new()).await.ok()?;
            (done == Value::Bool(true)).then_some(())
        })
        .await;
    }

    /// `message`, with the address and text of the page the browser shows
    /// and what its console said, for a panic (after which `Drop` keeps a screenshot).
    async fn failure(&self, message: &str) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let text = match self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                Vec::new(),
            )
            .await
        {
            Ok(Value::String(text)) => text,
            other => format!("{other:?}"),
        };
        let console = match self.console_entries().await {
            Ok(lines) => lines.join("\n"),
            Err(e) => format!("unknown ({e})"),
        };
        format!("{message}\npage: {url}\ntext:\n{text}\nconsole:\n{console}")
    }

    /// A blocking request to chromedriver, for `Drop`, where nothing can be
    /// awaited. chromedriver ignores HTTP/1.0 and keeps the connection open
    /// despite `Connection: close`, so the body ends at its `Content-Length`.
    fn blocking_driver_request(&self, method: &str, path: &str) -> Option<Vec<u8>> {
        let mut stream =
            TcpStream::connect_timeout(&self.driver.addr, Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            self.driver.addr
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = Vec::new();
        let mut chunk = [0; 64 * 1024];
        loop {
            let read = stream.read(&mut chunk).ok()?;
            if read == 0 {
                return None;
            }
            answer.extend_from_slice(&chunk[..read]);
            let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))?
                .trim()
                .parse()
                .ok()?;
            if answer.len() >= end + 4 + length {
                return Some(answer[end + 4..end + 4 + length].to_vec());
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.finished {
            // A failed test's last page is the one worth seeing.
            let name = std::thread::current()
                .name()
                .unwrap_or("browser")
                .rsplit("::")
                .next()
                .unwrap_or("browser")
                .to_owned();
            let png = self
                .blocking_driver_request("GET", &format!("/session/{}/screenshot", self.session))
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
                .and_then(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v["value"].as_str()?)
                        .ok()
                });
            if let Some(png) = png {
                let path = save_screenshot(&format!("{name}-failed"), &png);
                eprintln!("screenshot of the failed test's page: {}", path.display());
            }
        }
        if !self.finished {
            let _ = self.blocking_driver_request("DELETE", &format!("/session/{}", self.session));
        }
    }
}

/// A running chromedriver and, once a session exists, the Chromium it
/// started. Dropping it kills both.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts chromedriver on a port of its choosing and returns once it
    /// answers. It gets a process group of its own, which the Chromium it
    /// starts inherits, so that `Drop` can stop them together.
    async fn start(path: &str) -> Self {
        // chromedriver picks its port and now and then fails to bind it on
        // IPv4 ("IPv4 port not available. Exiting..."), when another test's
        // socket took it first: a new try picks another.
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::try_start(path).await {
                Ok(driver) => return driver,
                Err(seen) => failures.push(seen),
            }
        }
        panic!("chromedriver exited five times: {failures:#?}");
    }

    async fn try_start(path: &str) -> Result<Self, Vec<String>> {
        let mut child = Command::new(path)
            .arg("--port=0")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {path}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = tokio::time::timeout(TIMEOUT, async {
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                // "ChromeDriver was started successfully on port 35825."
                if let Some(port) = line
                    .split_once("started successfully on port ")
                    .and_then(|(_, rest)| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    return Ok(port);
                }
                seen.push(line);
            }
            Err(seen)
        })
        .await;
        let port = match started {
            Ok(Ok(port)) => port,
            Ok(Err(seen)) => return Err(seen),
            Err(_) => panic!("chromedriver did not start within {TIMEOUT:?}"),
        };
        // Keep reading, so that a chatty driver never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let driver = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let status = format!("http://{}/status", driver.addr);
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(r) = http.get(&status).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == Value::Bool(true)
            {
                return Ok(driver);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never said it was ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Chromium outlives a killed chromedriver. Killing the whole group
        // leaves nothing behind, even when the session could not be closed
        // or the browser never finished starting.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it.
    pub same_site: Option<String>,
    pub path: Option<String>,
    /// The `Domain` it was set for, as the browser reports it (a leading
    /// dot for a domain cookie), or `None` for a host-only cookie.
    pub domain: Option<String>,
}

/// One rule that axe-core found broken, with where.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Violation {
    /// The rule, e.g. `color-contrast`.
    pub id: String,
    /// `serious` or `critical`.
    pub impact: String,
    /// What the rule asks for, in a sentence.
    pub help: String,
    /// CSS selectors of the offending elements.
    pub targets: Vec<String>,
}

/// axe-core, vendored (see `tests/browser/README.md`).
const AXE_SOURCE: &str = include_str!("../../browser/axe.min.js");

/// Runs axe on the whole document and keeps what a test must not ship.
const AXE_RUN: &str = r"
return (async () => {
const root = document.documentElement;
const transparent = (el) => !el || getComputedStyle(el).backgroundColor === 'rgba(0, 0, 0, 0)';
const painted = root.style.backgroundColor;
if (transparent(root) && transparent(document.body)) {
  const probe = document.createElement('div');
  probe.style.backgroundColor = 'Canvas';
  root.appendChild(probe);
  root.style.backgroundColor = getComputedStyle(probe).backgroundColor;
  probe.remove();
}
try {
  const result = await axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    resultTypes: ['violations'],
  });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.flat().join(' >> ')),
    }));
} finally {
  root.style.backgroundColor = painted;
}
})();
";

/// The binary named by `env`, else the first of `names` on the `PATH`.
fn find_binary(env: &str, names: &[&str]) -> Option<String> {
    if let Ok(path) = std::env::var(env) {
        return Some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .map(|path| path.display().to_string())
    })
}

/// `target/browser-screenshots/`, found beside the binary under test, so it
/// is right whatever `CARGO_TARGET_DIR` says.
pub fn screenshot_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_latchkey"));
    let target = binary.parent().and_then(Path::parent).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        Path::to_owned,
    );
    target.join("browser-screenshots")
}

fn save_screenshot(name: &str, png: &[u8]) -> PathBuf {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// The real `latchkey serve`, on a port of its own over a fresh temporary
/// database, with the test environment of [`super::base_env`].
pub struct Latchkey {
    pub process: ServerProcess,
    pub env: Vec<(String, String)>,
    _dir: TempDir,
}

impl Latchkey {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With extra `LATCHKEY_*` settings on top of [`super::base_env`].
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = super::base_env(&dir);
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let process = ServerProcess::start(dir.path(), &env).await;
        Self {
            process,
            env,
            _dir: dir,
        }
    }

    /// The full address of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    /// Creates a user with the real CLI, as an administrator would.
    pub async fn add_user(&self, name: &str, password: &str, roles: &[&str]) {
        super::add_user(&self.env, name, password, roles).await;
    }
}

/// Serves `html` at every path of `http://127.0.0.2:{port}/`, another site
/// than latchkey's `127.0.0.1` (no cookies shared, `Sec-Fetch-Site:
/// cross-site`), for cross-site request forgery tests. The page has no
/// `Content-Security-Policy`, so its own scripts run (e.g. to submit a form
/// on load). Returns the site's root address; the server lives until the
/// test's runtime ends, or until the handle is aborted.
pub async fn attacker_site(html: &str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let page = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    let handle = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                // Read the request head (a form's body, if any, is ignored).
                let mut line = String::new();
                loop {
                    line.clear();
                    match stream.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" || line == "\n" => break,
                        Ok(_) => {}
                    }
                }
                let mut stream = stream.into_inner();
                let _ = stream.write_all(page.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, handle)
}
