//! A browser-like HTTP client for the console: keeps cookies (from `Set-Cookie`, dropping those
//! with `Max-Age=0`), does not follow redirects (tests look at them), and reads the CSRF token
//! out of the page's forms.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::helpers::TestApp;

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect goes.
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Every `Set-Cookie` line of the answer.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).map(|i| i + marker.len());
        start
            .and_then(|s| {
                self.body[s..]
                    .find('"')
                    .map(|e| self.body[s..s + e].to_owned())
            })
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }
}

pub struct Console {
    pub base: String,
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// Extra headers for every request (e.g. `X-Forwarded-Proto`).
    pub extra: Vec<(&'static str, String)>,
}

impl Console {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.address.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request.header("cookie", self.cookie_header());
        for (name, value) in &self.extra {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("console request");
        let page = Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap_or_default(),
        };
        for line in page.set_cookies() {
            let pair = line.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if line.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Posts a form as a browser would (same-origin `Origin`).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.base.clone())
            .body(body);
        self.send(request).await
    }

    /// Signs in with `key` through the form; answers the sign-in POST's page.
    pub async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/sign-in").await;
        let csrf = form.csrf();
        self.post("/sign-in", &[("csrf", &csrf), ("key", key)])
            .await
    }

    /// Signs in with an administrator key and chooses `tenant`; answers a page's CSRF token.
    pub async fn sign_in_to(&mut self, key: &str, tenant: &str) -> String {
        let signed = self.sign_in(key).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        let tenants = self.get("/tenants").await;
        let csrf = tenants.csrf();
        let chosen = self
            .post("/tenants/select", &[("csrf", &csrf), ("tenant", tenant)])
            .await;
        assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.body);
        assert_eq!(chosen.location(), "/pipelines");
        csrf
    }
}
