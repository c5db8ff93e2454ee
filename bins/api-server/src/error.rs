//! The one place that turns failures into HTTP answers: every error leaves as
//! `{"error":{"code":"<snake_case>","message":"<sentence>","fields":{...}}}`, and internal causes
//! are logged here, never sent.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed or breaks a rule; `fields` names the fields at fault.
    #[error("{message}")]
    BadRequest {
        /// The machine-readable code, e.g. `validation_failed`.
        code: &'static str,
        /// A human sentence.
        message: String,
        /// Field name to what is wrong with it.
        fields: BTreeMap<String, String>,
    },
    /// No token, or the wrong one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The request is understood but refused whatever the token (a foreign browser origin).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing with this id.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (a duplicate extension number).
    #[error("{message}")]
    Conflict {
        /// A human sentence.
        message: String,
        /// Field name to what is wrong with it.
        fields: BTreeMap<String, String>,
    },
    /// The route exists, but not with this method.
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    /// The body is over the size limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's headers are larger than the server accepts.
    #[error("the request headers are larger than {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("request bodies must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// The body comes with a `Content-Encoding` this server does not decode.
    #[error("request bodies are read as sent: Content-Encoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    /// A dependency is down for a moment; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The client sent more writes than its rate allows; it may retry after this many seconds.
    #[error("too many write requests from this client; retry in {retry_after} s")]
    TooManyRequests {
        /// Whole seconds until a write will be accepted again (at least 1).
        retry_after: u64,
    },
    /// Something failed inside; the cause is logged, the client gets a generic sentence.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a code and a sentence and no particular field.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// A 400 naming the fields at fault.
    pub fn invalid_fields(errors: &domain::FieldErrors) -> Self {
        let mut fields = BTreeMap::new();
        for e in &errors.0 {
            // The first problem of a field is the one to fix first.
            fields
                .entry(e.field.clone())
                .or_insert_with(|| e.rule.to_string());
        }
        Self::BadRequest {
            code: "validation_failed",
            message: format!("The request is not valid: {errors}."),
            fields,
        }
    }

    /// A 404 for a record id.
    pub fn no_such_extension(id: &str) -> Self {
        // An id is 24 characters; a longer path segment is named by its start only, so the
        // answer does not echo whatever a client put in the URL.
        const SHOWN: usize = 32;
        match id.char_indices().nth(SHOWN) {
            None => Self::NotFound(format!("No extension has the id {id:?}.")),
            Some((cut, _)) => Self::NotFound(format!(
                "No extension has the id {:?}... ({} characters; an id has 24).",
                &id[..cut],
                id.chars().count()
            )),
        }
    }

    /// An internal failure; `cause` is logged when the response is built and never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// Maps a store failure: conflicts, missing records and transient outages have their own
    /// answers; anything else is internal.
    pub fn from_store(e: &store::StoreError) -> Self {
        if e.is_conflict() {
            let mut fields = BTreeMap::new();
            fields.insert("extension".to_owned(), "is already taken".to_owned());
            Self::Conflict {
                message: "An extension with this number already exists.".to_owned(),
                fields,
            }
        } else if e.is_not_found() {
            Self::NotFound("No such extension.".to_owned())
        } else if e.is_transient() {
            tracing::warn!(error = %e, "store temporarily unavailable");
            Self::Unavailable("The store is temporarily unavailable; try again.".to_owned())
        } else {
            Self::internal(e)
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => "unsupported_media_type",
            Self::Unavailable(_) => "unavailable",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The sentence sent to the client.
    fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "Something went wrong on the server; it has been logged.".into(),
            Self::PayloadTooLarge { limit } => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            Self::UnsupportedMediaType => {
                "Request bodies must be JSON sent with Content-Type: application/json.".into()
            }
            Self::UnsupportedEncoding(encoding) => format!(
                "The request body's Content-Encoding {encoding:?} is not supported: send the JSON \
                 uncompressed, without Content-Encoding."
            ),
            Self::MethodNotAllowed => "This method is not allowed on this address.".into(),
            Self::TooManyRequests { retry_after } => {
                format!("Too many write requests from this address; try again in {retry_after} s.")
            }
            other => other.to_string(),
        }
    }

    fn fields(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Self::BadRequest { fields, .. } | Self::Conflict { fields, .. }
                if !fields.is_empty() =>
            {
                Some(fields)
            }
            _ => None,
        }
    }
}

/// The JSON error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A snake_case code, e.g. `validation_failed`, `not_found`, `conflict`.
    pub code: String,
    /// A human sentence.
    pub message: String,
    /// Field name to what is wrong with it, when particular fields are at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(%cause, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.public_message(),
                fields: self.fields().cloned(),
            },
        };
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized(_)) {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        match self {
            Self::TooManyRequests { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            // A 503 is a moment's trouble (the store, the connection limit, the PBX): one
            // second tells a well-behaved client when to try again rather than at once.
            Self::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        res.json(body)
    }
}

/// The JSON 404 for addresses that route nowhere.
pub fn json_not_found() -> HttpResponse {
    ApiError::NotFound("There is nothing at this address.".to_owned()).error_response()
}

/// The JSON 405 for a route that exists with other methods.
pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// The default service of a resource whose methods are `allow` (e.g. `"GET, POST"`): the JSON
/// 405 with the `Allow` header that names them, as HTTP requires of a 405.
pub fn not_allowed(allow: &'static str) -> actix_web::Route {
    actix_web::web::to(move || async move {
        let mut res = ApiError::MethodNotAllowed.error_response();
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn render(e: ApiError) -> (u16, serde_json::Value) {
        let res = e.error_response();
        let status = res.status().as_u16();
        let body = to_bytes(res.into_body()).await.expect("body");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    #[actix_web::test]
    async fn shapes() {
        let (s, v) = render(ApiError::internal("disk on fire at /var/secret")).await;
        assert_eq!(s, 500);
        assert_eq!(v["error"]["code"], "internal_error");
        assert!(!v.to_string().contains("disk on fire"), "{v}");
        assert!(v["error"].get("fields").is_none());

        let errs = domain::NewExtension::from_json(
            serde_json::json!({"extension": "1", "status": "online"})
                .as_object()
                .expect("object"),
        )
        .expect_err("invalid");
        let (s, v) = render(ApiError::invalid_fields(&errs)).await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["code"], "validation_failed");
        assert_eq!(
            v["error"]["fields"]["status"],
            "is set by the server and cannot be written"
        );
        assert_eq!(
            v["error"]["fields"]["extension"],
            "must be at least 2 characters, got 1"
        );

        let (s, v) = render(ApiError::Unauthorized("A token is required.")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
        let (s, _) = render(ApiError::PayloadTooLarge { limit: 10 }).await;
        assert_eq!(s, 413);
        let (s, _) = render(ApiError::UnsupportedMediaType).await;
        assert_eq!(s, 415);
        let (s, v) = render(ApiError::Forbidden("Not from this origin.".into())).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
        let res = ApiError::TooManyRequests { retry_after: 3 }.error_response();
        assert_eq!(res.status().as_u16(), 429);
        assert_eq!(
            res.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
        let res = ApiError::Unavailable("The store is busy.".into()).error_response();
        assert_eq!(res.status().as_u16(), 503);
        assert_eq!(
            res.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }

    #[actix_web::test]
    async fn a_long_id_is_not_echoed_whole() {
        let (s, v) = render(ApiError::no_such_extension("6b124ffe28fc9224f0354c0d")).await;
        assert_eq!(s, 404);
        assert_eq!(
            v["error"]["message"],
            "No extension has the id \"6b124ffe28fc9224f0354c0d\"."
        );
        let long = "é".repeat(20_000);
        let (s, v) = render(ApiError::no_such_extension(&long)).await;
        assert_eq!(s, 404);
        let message = v["error"]["message"].as_str().expect("message");
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("20000 characters"), "{message}");
    }
}
