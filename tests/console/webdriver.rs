//! A minimal W3C WebDriver client over `reqwest` (already a dev-dependency) for the browser
//! test: new session, navigate, find, type, click, read text, run a script, screenshot. The
//! `fantoccini` crate would do the same, but with `rustls-tls` it pulls in `aws-lc-sys` (a C
//! build of several minutes here) and about 40 more crates for the dozen calls made below.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// The key WebDriver puts element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running `chromedriver` and one headless Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    client: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session of 1400×1250.
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            client,
        };
        for _ in 0..100 {
            let ready = browser
                .client
                .get(format!("{}/status", browser.base))
                .send()
                .await;
            if ready.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let session = browser
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1400,1250",
                                 "--force-device-scale-factor=1"],
                    },
                }}}),
            )
            .await;
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        }
    }

    /// A WebDriver call; `Err` says why it failed (e.g. a stale element the page's polling
    /// replaced in the meantime).
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if method == reqwest::Method::POST {
            request = request.json(&body);
        }
        let response = request.send().await.expect("WebDriver request");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("WebDriver {path}: {status} {answer}"));
        }
        Ok(answer["value"].clone())
    }

    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The elements matching a CSS selector (none: empty).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting up to `seconds` for it.
    pub async fn find(&self, css: &str, seconds: u64) -> Element {
        for _ in 0..seconds * 5 {
            if let Some(first) = self.all(css).await.into_iter().next() {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "no `{css}` on {} after {seconds} s:\n{}",
            self.url().await,
            self.source().await
        );
    }

    /// The element's text; `None` when it is gone (replaced by the page's polling).
    pub async fn text(&self, element: &Element) -> Option<String> {
        self.try_call(
            reqwest::Method::GET,
            &format!("/element/{}/text", element.0),
            Value::Null,
        )
        .await
        .ok()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the text of the first `css` element satisfies `ok`; answers it.
    pub async fn wait_text(&self, css: &str, seconds: u64, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..seconds * 2 {
            if let Some(element) = self.all(css).await.into_iter().next()
                && let Some(text) = self.text(&element).await
            {
                last = text;
                if ok(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "`{css}` never matched after {seconds} s; last text: {last:?}\n{}",
            self.source().await
        );
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css, 10).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/clear", element.0),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            json!({"text": text}),
        )
        .await;
    }

    /// Clicks the first `css` element, finding it again if the page's polling replaced it.
    pub async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            let element = self.find(css, 10).await;
            match self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{}/click", element.0),
                    json!({}),
                )
                .await
            {
                Ok(_) => return,
                Err(error) if error.contains("stale element") => last = error,
                Err(error) => panic!("{error}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` kept going stale: {last}");
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page (WebDriver's own channel, not subject to the page's CSP).
    pub async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// A PNG of the viewport, written to `path`; answers its size in bytes.
    pub async fn screenshot(&self, path: &Path) -> usize {
        let data = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, &png).expect("write the screenshot");
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (and so Chromium) with a plain blocking request, then the driver.
        use std::io::{Read, Write};
        if let Some(rest) = self.base.strip_prefix("http://") {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if let Ok(mut stream) = std::net::TcpStream::connect(host) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
