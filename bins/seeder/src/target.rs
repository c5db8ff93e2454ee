//! Where the seeder writes: a store opened directly (embedded or MongoDB), or a running
//! api-server's REST API, for when the embedded store already belongs to that server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::{Extension, ExtensionPatch, NewExtension, RecordId};
use serde_json::{Map, Value, json};
use store::{Repository, Secret, StoreError};

/// Why a write or the initial listing failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API answered with an error.
    #[error("the API answered {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error message of the answer, with the fields at fault.
        message: String,
    },
    /// The API could not be reached, or answered something unreadable.
    #[error("API request failed: {0}")]
    Transport(String),
}

impl TargetError {
    /// Whether the API refused the token (401 or 403): every other write would be refused
    /// the same way.
    pub fn is_refused_token(&self) -> bool {
        matches!(
            self,
            Self::Api {
                status: 401 | 403,
                ..
            }
        )
    }

    /// Whether the run should stop rather than try the other rows: a refused token, an API
    /// that does not answer, or a store that is unavailable.
    pub fn stops_the_run(&self) -> bool {
        match self {
            Self::Api { .. } => self.is_refused_token(),
            Self::Transport(_) => true,
            Self::Store(e) => e.is_transient(),
        }
    }
}

/// How many times a request the API answered 429 or 503 is sent again before it counts as
/// failed.
pub const RETRIES: u32 = 10;
/// The longest the seeder waits before one retry, whatever `Retry-After` asks for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long to wait before retry number `retry` (0-based) when the answer does not say:
/// 1 s, 2 s, 4 s, ... up to [`MAX_WAIT`].
fn backoff(retry: u32) -> Duration {
    Duration::from_secs(1u64 << retry.min(6)).min(MAX_WAIT)
}

/// The wait a 429 or 503 answer asks for in `Retry-After` (whole seconds; the HTTP-date form
/// is not read and counts as absent), at most [`MAX_WAIT`].
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_WAIT))
}

/// Checks an `--api` URL: `http://host[:port][/prefix]`, without credentials, query or
/// fragment. Answers it without a trailing `/`, or what is wrong.
pub fn check_api_url(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    let example = "give the api-server's address, e.g. http://127.0.0.1:8080";
    let url =
        reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e}); {example}"))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{text}: only http:// URLs are supported (run the seeder next to the server, \
                 or behind a TLS-terminating proxy)"
            ));
        }
        other => {
            return Err(format!(
                "{text:?}: the scheme {other:?} is not supported; {example}"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds a user name or password, which the seeder does not send; give the \
             admin token with --token"
                .to_owned(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} names no host; {example}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?} has a query or fragment; {example} (a path prefix is fine)"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// The three operations an upsert needs.
#[async_trait]
pub trait Target: Send + Sync {
    /// Says where the records go, for the summary.
    fn describe(&self) -> String;
    /// Every stored record.
    async fn list(&self) -> Result<Vec<Extension>, TargetError>;
    /// Creates a record.
    async fn create(&self, new: NewExtension) -> Result<Extension, TargetError>;
    /// Changes user fields of a record.
    async fn update(&self, id: &RecordId, patch: ExtensionPatch) -> Result<Extension, TargetError>;
}

/// A store opened by the seeder itself.
pub struct StoreTarget {
    /// The open store.
    pub store: Arc<dyn Repository>,
    /// Where it is, for the summary.
    pub description: String,
}

#[async_trait]
impl Target for StoreTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn list(&self) -> Result<Vec<Extension>, TargetError> {
        Ok(self.store.list(&domain::ExtensionFilter::default()).await?)
    }

    async fn create(&self, new: NewExtension) -> Result<Extension, TargetError> {
        Ok(self.store.create(new).await?)
    }

    async fn update(&self, id: &RecordId, patch: ExtensionPatch) -> Result<Extension, TargetError> {
        Ok(self.store.update(id, patch).await?.record)
    }
}

/// A running api-server, reached over plain HTTP.
pub struct ApiTarget {
    client: reqwest::Client,
    base: String,
    token: Option<Secret>,
    /// No request is sent before this instant: set by a 429 or 503 answer, so that the other
    /// writes in flight wait with the one that was told to, instead of being refused too.
    not_before: Mutex<Option<tokio::time::Instant>>,
}

impl ApiTarget {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`, checked with
    /// [`check_api_url`]), sending `token` as a bearer token when given.
    pub fn new(base: &str, token: Option<Secret>) -> Result<Self, TargetError> {
        let base = check_api_url(base).map_err(TargetError::Transport)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TargetError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            base,
            token,
            not_before: Mutex::new(None),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => req.bearer_auth(token.expose()),
            None => req,
        }
    }

    fn not_before(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.not_before
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends a request, and again after the wait the server asks for when it answers 429
    /// (rate limited) or 503 (store unavailable): at most [`RETRIES`] times, each wait at most
    /// [`MAX_WAIT`]. Those answers mean the request changed nothing, so sending it again is
    /// safe.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, TargetError> {
        let mut retries = 0;
        loop {
            let wait_until = *self.not_before();
            if let Some(instant) = wait_until {
                tokio::time::sleep_until(instant).await;
            }
            let mut req = self.request(method.clone(), path);
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.map_err(|e| {
                TargetError::Transport(format!("{}: {}", self.base, store::cli::causes(&e)))
            })?;
            let status = resp.status();
            let retry = matches!(status.as_u16(), 429 | 503) && retries < RETRIES;
            let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(retries));
            let body = resp
                .bytes()
                .await
                .map_err(|e| TargetError::Transport(store::cli::causes(&e)))?;
            if retry {
                let until = tokio::time::Instant::now() + wait;
                let mut not_before = self.not_before();
                if not_before.is_none_or(|t| t < until) {
                    *not_before = Some(until);
                }
                retries += 1;
                continue;
            }
            if !status.is_success() {
                let mut message = error_message(&body);
                if retries > 0 {
                    message.push_str(&format!(" (still so after {retries} retries)"));
                }
                return Err(TargetError::Api {
                    status: status.as_u16(),
                    message,
                });
            }
            return serde_json::from_slice(&body)
                .map_err(|e| TargetError::Transport(format!("unreadable answer: {e}")));
        }
    }
}

/// The JSON body of a creation request.
pub fn create_body(new: &NewExtension) -> Value {
    json!({
        "extension": new.extension.as_str(),
        "agent_name": new.agent_name.as_str(),
        "department": new.department.as_str(),
        "is_active": new.is_active,
    })
}

/// The JSON body of an update request: only the fields that change.
pub fn update_body(patch: &ExtensionPatch) -> Value {
    let mut body = Map::new();
    if let Some(name) = &patch.agent_name {
        body.insert("agent_name".into(), name.as_str().into());
    }
    if let Some(dept) = &patch.department {
        body.insert("department".into(), dept.as_str().into());
    }
    if let Some(active) = patch.is_active {
        body.insert("is_active".into(), active.into());
    }
    Value::Object(body)
}

/// Reads `{"error":{"message":..., "fields":{...}}}`, or shows the body as it is.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let Some(message) = error.and_then(|e| e.get("message")).and_then(Value::as_str) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return if text.is_empty() {
            "(no body)".into()
        } else {
            text.chars().take(200).collect()
        };
    };
    let fields = error
        .and_then(|e| e.get("fields"))
        .and_then(Value::as_object)
        .map(|fields| {
            fields
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("invalid")))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty());
    match fields {
        Some(fields) => format!("{message} ({fields})"),
        None => message.to_owned(),
    }
}

#[async_trait]
impl Target for ApiTarget {
    fn describe(&self) -> String {
        format!("API {}", self.base)
    }

    async fn list(&self) -> Result<Vec<Extension>, TargetError> {
        self.send(reqwest::Method::GET, "/api/extensions", None)
            .await
    }

    async fn create(&self, new: NewExtension) -> Result<Extension, TargetError> {
        let body = create_body(&new);
        self.send(reqwest::Method::POST, "/api/extensions", Some(&body))
            .await
    }

    async fn update(&self, id: &RecordId, patch: ExtensionPatch) -> Result<Extension, TargetError> {
        let body = update_body(&patch);
        self.send(
            reqwest::Method::PUT,
            &format!("/api/extensions/{id}"),
            Some(&body),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AgentName, Department, ExtensionNumber};

    #[test]
    fn request_bodies() {
        let new = NewExtension {
            extension: ExtensionNumber::parse("1001").expect("ext"),
            agent_name: AgentName::parse("{\"$ne\": 1}").expect("name"),
            department: Department::parse("Sales").expect("dept"),
            is_active: true,
        };
        assert_eq!(
            create_body(&new),
            json!({"extension": "1001", "agent_name": "{\"$ne\": 1}", "department": "Sales", "is_active": true})
        );
        let patch = ExtensionPatch {
            department: Some(Department::parse("Support").expect("dept")),
            is_active: Some(false),
            ..Default::default()
        };
        assert_eq!(
            update_body(&patch),
            json!({"department": "Support", "is_active": false})
        );
    }

    #[test]
    fn error_messages() {
        let rows: [(&[u8], &str); 4] = [
            (
                br#"{"error":{"code":"invalid","message":"The request is invalid.","fields":{"agent_name":"must not contain control characters"}}}"#,
                "The request is invalid. (agent_name: must not contain control characters)",
            ),
            (
                br#"{"error":{"code":"conflict","message":"Extension 1001 exists."}}"#,
                "Extension 1001 exists.",
            ),
            (b"Bad Gateway", "Bad Gateway"),
            (b"", "(no body)"),
        ];
        for (body, want) in rows {
            assert_eq!(error_message(body), want);
        }
    }

    #[test]
    fn only_plain_http() {
        assert!(ApiTarget::new("http://127.0.0.1:8080/", None).is_ok());
        let err = ApiTarget::new("https://example.net", None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("only http:// URLs are supported"));
    }

    #[test]
    fn api_urls_are_checked() {
        for (raw, want) in [
            ("http://127.0.0.1:8080/", Ok("http://127.0.0.1:8080")),
            (" http://h:1 ", Ok("http://h:1")),
            ("http://proxy/extstatus/", Ok("http://proxy/extstatus")),
            ("https://h", Err("only http:// URLs are supported")),
            ("ftp://h", Err("the scheme \"ftp\" is not supported")),
            ("127.0.0.1:8080", Err("is not a URL")),
            (
                "localhost:8080",
                Err("the scheme \"localhost\" is not supported"),
            ),
            ("http://", Err("is not a URL")),
            ("http://u:pw@h", Err("holds a user name or password")),
            ("http://h/?x=1", Err("has a query or fragment")),
            ("http://h/#x", Err("has a query or fragment")),
        ] {
            match (check_api_url(raw), want) {
                (Ok(url), Ok(want)) => assert_eq!(url, want, "{raw}"),
                (Err(e), Err(want)) => {
                    assert!(e.contains(want), "{raw}: {e}");
                    assert!(!e.contains("pw"), "{raw}: {e}");
                }
                (got, want) => panic!("{raw}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn tokens_and_retry_waits() {
        assert!(store::cli::token_problem("s3cr3t-!#").is_ok());
        for bad in ["a b", "tok\n", " tok", "tök"] {
            assert!(store::cli::token_problem(bad).is_err(), "{bad:?}");
        }
        let headers = |v: &str| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                reqwest::header::RETRY_AFTER,
                v.parse().expect("header value"),
            );
            h
        };
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers(" 0 ")), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("86400")), Some(MAX_WAIT));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
