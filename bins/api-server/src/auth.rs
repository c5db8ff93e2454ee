//! Token checks: which routes need which token, and a constant-time comparison.
//!
//! The rules of the public interface: with an admin token set, POST/PUT/DELETE need it; with a
//! viewer token set, reads of `/api/*`, `/metrics` and `/ws` need the viewer or the admin token
//! (`?token=` is accepted on `/ws`, where browsers cannot set headers). The dashboard, its
//! assets, `/healthz` and `/readyz` are always open. When only a viewer token is set, writes need
//! at least that token, so that a read-protected server never has open writes.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::web;
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, Secret};
use crate::error::ApiError;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing.
    Open,
    /// The viewer or the admin token (when a viewer token is set).
    Read,
    /// The admin token (when set).
    Write,
}

impl Need {
    /// The need of a request from its method and path.
    pub fn of(method: &Method, path: &str) -> Self {
        let guarded = path == "/api"
            || path.starts_with("/api/")
            || path == "/metrics"
            || path == "/ws"
            || path.starts_with("/ws/");
        if !guarded {
            Need::Open
        } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Need::Read
        } else {
            Need::Write
        }
    }
}

/// Compares a presented token with a configured one without leaking, through timing, how many
/// leading bytes matched.
fn matches(presented: &str, expected: &Secret) -> bool {
    presented
        .as_bytes()
        .ct_eq(expected.expose().as_bytes())
        .into()
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens(AuthConfig);

impl Tokens {
    /// Wraps the configured tokens.
    pub fn new(config: AuthConfig) -> Self {
        Self(config)
    }

    /// Whether a request with this need, presenting `token`, may proceed.
    pub fn check(&self, need: Need, token: Option<&str>) -> Result<(), ApiError> {
        let AuthConfig {
            admin_token,
            viewer_token,
        } = &self.0;
        let accepted: Vec<&Secret> = match need {
            Need::Open => return Ok(()),
            Need::Read => match viewer_token {
                Some(viewer) => [Some(viewer), admin_token.as_ref()]
                    .into_iter()
                    .flatten()
                    .collect(),
                None => return Ok(()),
            },
            Need::Write => match (admin_token, viewer_token) {
                (Some(admin), _) => vec![admin],
                (None, Some(viewer)) => vec![viewer],
                (None, None) => return Ok(()),
            },
        };
        let Some(token) = token else {
            return Err(ApiError::Unauthorized(
                "This request needs a token: send Authorization: Bearer <token>.",
            ));
        };
        // Every candidate is compared, so the time taken does not tell which one matched.
        let ok = accepted
            .iter()
            .fold(false, |ok, expected| ok | matches(token, expected));
        if ok {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "The token is not valid for this request.",
            ))
        }
    }
}

/// The bearer token of a request, or for `/ws` its `?token=` parameter.
fn presented_token(req: &ServiceRequest) -> Option<String> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
    if header.is_some() {
        return header;
    }
    if req.path() == "/ws" {
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).ok()?;
        return query
            .0
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v);
    }
    None
}

/// The middleware: refuses a request that lacks the token its route needs.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let need = Need::of(req.method(), req.path());
    if need != Need::Open {
        let tokens = req
            .app_data::<web::Data<Tokens>>()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default();
        tokens.check(need, presented_token(&req).as_deref())?;
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(admin: Option<&str>, viewer: Option<&str>) -> Tokens {
        Tokens::new(AuthConfig {
            admin_token: admin.map(Secret::new),
            viewer_token: viewer.map(Secret::new),
        })
    }

    #[test]
    fn needs() {
        let rows = [
            (Method::GET, "/", Need::Open),
            (Method::GET, "/app.js", Need::Open),
            (Method::GET, "/healthz", Need::Open),
            (Method::GET, "/readyz", Need::Open),
            (Method::GET, "/metrics", Need::Read),
            (Method::GET, "/ws", Need::Read),
            (Method::GET, "/api/extensions", Need::Read),
            (Method::GET, "/api/openapi.json", Need::Read),
            (Method::POST, "/api/extensions", Need::Write),
            (Method::PUT, "/api/extensions/x", Need::Write),
            (Method::DELETE, "/api/extensions/x", Need::Write),
            (Method::GET, "/apix", Need::Open),
        ];
        for (m, p, want) in rows {
            assert_eq!(Need::of(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn checks() {
        let a = Some("adm");
        let v = Some("view");
        let rows: &[(Tokens, Need, Option<&str>, bool)] = &[
            (tokens(None, None), Need::Write, None, true),
            (tokens(None, None), Need::Read, None, true),
            (tokens(a, None), Need::Read, None, true),
            (tokens(a, None), Need::Write, None, false),
            (tokens(a, None), Need::Write, Some("adm"), true),
            (tokens(a, None), Need::Write, Some("ad"), false),
            (tokens(a, None), Need::Write, Some("admin"), false),
            (tokens(a, v), Need::Write, Some("view"), false),
            (tokens(a, v), Need::Read, Some("view"), true),
            (tokens(a, v), Need::Read, Some("adm"), true),
            (tokens(a, v), Need::Read, None, false),
            (tokens(a, v), Need::Read, Some(""), false),
            (tokens(None, v), Need::Write, Some("view"), true),
            (tokens(None, v), Need::Write, None, false),
            (tokens(a, v), Need::Open, None, true),
        ];
        for (t, need, token, ok) in rows {
            assert_eq!(
                t.check(*need, *token).is_ok(),
                *ok,
                "{t:?} {need:?} {token:?}"
            );
        }
    }
}
