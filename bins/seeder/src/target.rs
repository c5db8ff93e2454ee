//! Where the seeder writes: a store opened directly (embedded or MongoDB), or a running
//! api-server's REST API, for when the embedded store already belongs to that server.

use std::sync::Arc;

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
}

impl ApiTarget {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`), sending `token` as a
    /// bearer token when given.
    pub fn new(base: &str, token: Option<Secret>) -> Result<Self, TargetError> {
        let base = base.trim().trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(TargetError::Transport(format!(
                "{base}: only http:// URLs are supported (run the seeder next to the server, \
                 or behind a TLS-terminating proxy)"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| TargetError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            base,
            token,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => req.bearer_auth(token.expose()),
            None => req,
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, TargetError> {
        let resp = req.send().await.map_err(|e| {
            TargetError::Transport(format!("{}: {}", self.base, store::cli::causes(&e)))
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| TargetError::Transport(store::cli::causes(&e)))?;
        if !status.is_success() {
            return Err(TargetError::Api {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| TargetError::Transport(format!("unreadable answer: {e}")))
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
        self.send(self.request(reqwest::Method::GET, "/api/extensions"))
            .await
    }

    async fn create(&self, new: NewExtension) -> Result<Extension, TargetError> {
        let req = self
            .request(reqwest::Method::POST, "/api/extensions")
            .json(&create_body(&new));
        self.send(req).await
    }

    async fn update(&self, id: &RecordId, patch: ExtensionPatch) -> Result<Extension, TargetError> {
        let req = self
            .request(reqwest::Method::PUT, &format!("/api/extensions/{id}"))
            .json(&update_body(&patch));
        self.send(req).await
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
}
