//! A small W3C WebDriver client over HTTP for the dashboard's browser tests: it starts Debian's
//! `chromedriver` on a free port, opens one headless Chromium session with a fresh profile,
//! and offers the handful of commands the tests use.
//!
//! It is written here rather than taken from a crate because the tests need a dozen commands,
//! all of them JSON over HTTP, and `reqwest` is already a dependency.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

/// The key under which WebDriver returns element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where a binary is: the environment variable `var` when set, else the Debian path.
fn binary(var: &str, debian: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(debian), PathBuf::from);
    if !path.is_file() {
        bail!(
            "the dashboard's browser tests need {} (Debian package `{package}`; CI's .ci/run \
             installs it: `apt-get install -y chromium chromium-driver`), or {var} set to its path",
            path.display()
        );
    }
    Ok(path)
}

/// The flags that make Chromium quiet, deterministic and container-friendly.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--window-size=1400,1000",
    "--lang=en-US",
];

/// A running `chromedriver` with one browser session. Dropping it ends both.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    profile: tempfile::TempDir,
}

/// A reference to an element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session.
    pub async fn start() -> anyhow::Result<Browser> {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium", "chromium")?;
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver")?;
        let profile = tempfile::tempdir()?;
        let port = free_port()?;
        let driver = spawn_driver(&chromedriver, port, profile.path())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            http,
            base,
            session: String::new(),
            driver,
            profile,
        };
        browser.wait_ready().await?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser.profile.path().join("profile").display()
        ));
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": chromium.to_string_lossy(),
                        "args": args,
                    },
                }
            }
        });
        let res = browser
            .raw(reqwest::Method::POST, "/session", Some(caps))
            .await?;
        browser.session = res["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {res}"))?
            .to_owned();
        Ok(browser)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(res) = self.http.get(format!("{}/status", self.base)).send().await
                && res.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chromedriver did not answer on {} within 20 s", self.base);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a command outside the session (or to create it) and returns its `value`.
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("WebDriver {method} {path}"))?;
        let status = res.status();
        let body: Value = res.json().await.context("WebDriver answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "WebDriver {method} {path}: {status}: {} {}",
                body["value"]["error"],
                body["value"]["message"]
            );
        }
        Ok(body["value"].clone())
    }

    /// Sends a session command and returns its `value`.
    async fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body).await
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn exec(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script` with a callback as its last argument and returns what it passes to it.
    pub async fn exec_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Sets the script timeout for [`Browser::exec_async`].
    pub async fn script_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.cmd(
            reqwest::Method::POST,
            "/timeouts",
            Some(json!({ "script": ms })),
        )
        .await
        .map(drop)
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        v[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| anyhow!("no element reference for {css}: {v}"))
    }

    /// Clicks an element as a user would (it must be visible and not covered).
    pub async fn click(&self, el: &Element) -> anyhow::Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/click", el.0),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Types text into an element as key presses.
    pub async fn type_text(&self, el: &Element, text: &str) -> anyhow::Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Empties an input.
    pub async fn clear(&self, el: &Element) -> anyhow::Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/clear", el.0),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let text = v
            .as_str()
            .ok_or_else(|| anyhow!("screenshot is not text"))?;
        base64_decode(text)
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let path = format!("/session/{}", self.session);
        self.raw(reqwest::Method::DELETE, &path, None).await?;
        self.session.clear();
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver runs in its own process group with the browser it started, so one signal
        // to the group ends both, even when a failed test never reached `close`.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn spawn_driver(path: &Path, port: u16, dir: &Path) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let log = std::fs::File::create(dir.join("chromedriver.log"))?;
    Command::new(path)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))
}

/// A port that was free a moment ago (chromedriver has no port-0 mode).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Decodes standard base64 (WebDriver's screenshot encoding).
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.as_bytes() {
        if c == b'=' || c.is_ascii_whitespace() {
            continue;
        }
        let v = value(c).ok_or_else(|| anyhow!("bad base64 byte {c}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff)?);
        }
    }
    Ok(out)
}

#[test]
fn base64_round_trips_known_values() {
    let rows: [(&str, &[u8]); 4] = [
        ("", b""),
        ("Zg==", b"f"),
        ("Zm9vYg==", b"foob"),
        ("iVBORw0KGgo=", b"\x89PNG\r\n\x1a\n"),
    ];
    for (text, want) in rows {
        assert_eq!(base64_decode(text).expect("decode"), want, "{text}");
    }
}
