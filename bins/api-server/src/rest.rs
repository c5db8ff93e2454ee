//! The REST API on `/api/extensions`: list with filters, get, create, update, delete. Bodies are
//! checked here (media type, size, JSON, members) and by `domain` (field rules); writes go
//! through the [`crate::writer::Writer`], which publishes each change after the store holds it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use domain::{Department, ExtensionFilter, ExtensionPatch, NewExtension, Presence, RecordId};
use futures_util::StreamExt as _;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorBody};
use crate::openapi::{ExtensionBody, NewExtensionBody, PatchBody};
use crate::state::AppState;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// A request body that is a JSON object: `Content-Type: application/json` (else 415), at most
/// [`MAX_BODY`] bytes (else 413), valid UTF-8 JSON (else 400) and an object (else 400).
pub struct JsonObject(pub Map<String, Value>);

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

async fn read_object(req: HttpRequest, mut payload: Payload) -> Result<JsonObject, ApiError> {
    if !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("The request body could not be read: {e}."),
            )
        })?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    let body: Body = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    match body {
        Body::Object { map, duplicates } if duplicates.is_empty() => Ok(JsonObject(map)),
        // A member given twice is ambiguous: a proxy or a log may have read the other value.
        Body::Object { duplicates, .. } => Err(ApiError::BadRequest {
            code: "invalid_json",
            message: "The request body gives a member more than once.".to_owned(),
            fields: duplicates
                .into_iter()
                .map(|name| (name, "is given more than once".to_owned()))
                .collect(),
        }),
        Body::Other => Err(ApiError::bad_request(
            "invalid_json",
            "The request body must be a JSON object.",
        )),
    }
}

/// A request body as read: a top-level object with the names of any members it repeats
/// (`serde_json::Map` would silently keep the last), or anything else.
enum Body {
    Object {
        map: Map<String, Value>,
        duplicates: Vec<String>,
    },
    Other,
}

impl<'de> serde::Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Body;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Body, A::Error> {
                let mut map = Map::new();
                let mut duplicates = Vec::new();
                while let Some((key, value)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        if !duplicates.contains(&key) {
                            duplicates.push(key);
                        }
                    } else {
                        map.insert(key, value);
                    }
                }
                Ok(Body::Object { map, duplicates })
            }

            // Every other JSON value is read in full (so syntax errors are still reported)
            // and then refused as not an object.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Body, A::Error> {
                while access.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Body::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_unit<E>(self) -> Result<Body, E> {
                Ok(Body::Other)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        Box::pin(read_object(req.clone(), payload.take()))
    }
}

/// Reads the filters of a list request. Unknown parameters, repeated ones and bad values are
/// refused; an empty value means "no filter" (what an HTML form sends for "any").
pub fn parse_filter(query: &str) -> Result<ExtensionFilter, ApiError> {
    let pairs = query_pairs(query)?;
    let mut filter = ExtensionFilter::default();
    let mut fields = BTreeMap::new();
    let mut seen = Vec::new();
    for (key, value) in pairs {
        if seen.contains(&key) {
            fields.insert(key, "is given more than once".to_owned());
            continue;
        }
        seen.push(key.clone());
        if value.is_empty() && ["department", "status", "is_active"].contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "department" => match Department::parse(&value) {
                Ok(d) => filter.department = Some(d),
                Err(e) => {
                    fields.insert(key, e.rule.to_string());
                }
            },
            "status" => match value.parse::<Presence>() {
                Ok(p) => filter.status = Some(p),
                Err(_) => {
                    fields.insert(key, "must be online, offline or unknown".to_owned());
                }
            },
            "is_active" => match value.as_str() {
                "true" => filter.is_active = Some(true),
                "false" => filter.is_active = Some(false),
                _ => {
                    fields.insert(key, "must be true or false".to_owned());
                }
            },
            _ => {
                fields.insert(key, "is not a known filter".to_owned());
            }
        }
    }
    if fields.is_empty() {
        Ok(filter)
    } else {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        Err(ApiError::BadRequest {
            code: "invalid_filter",
            message: format!("The filter is not valid: {}.", names.join(", ")),
            fields,
        })
    }
}

/// The decoded `name=value` pairs of a query string. Percent-encoded bytes that are not UTF-8
/// are refused, naming the parameter, rather than silently replaced by U+FFFD.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    for part in query.split('&') {
        let mut bytes = Vec::with_capacity(part.len());
        let raw = part.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            match (
                raw[i],
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(hi), Some(lo)) => {
                    bytes.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 3;
                }
                (b, _, _) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        if std::str::from_utf8(&bytes).is_err() {
            let name = part.split('=').next().unwrap_or(part);
            let mut fields = BTreeMap::new();
            fields.insert(
                name.to_owned(),
                "is not valid UTF-8 once percent-decoded".to_owned(),
            );
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "The query parameter {name:?} is not valid UTF-8 once percent-decoded."
                ),
                fields,
            });
        }
    }
    web::Query::<Vec<(String, String)>>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::bad_request("invalid_query", "The query string is malformed."))
}

fn parse_id(raw: &str) -> Result<RecordId, ApiError> {
    // An id that cannot exist is simply not found, as for any other unknown id.
    RecordId::parse(raw).map_err(|_| ApiError::no_such_extension(raw))
}

/// Lists extensions, filtered.
#[utoipa::path(
    get,
    path = "/api/extensions",
    tag = "extensions",
    params(
        ("department" = Option<String>, Query, description = "Only this department (exact match)"),
        ("status" = Option<String>, Query, description = "Only this presence: online, offline or unknown"),
        ("is_active" = Option<bool>, Query, description = "Only active (true) or inactive (false) extensions"),
    ),
    responses(
        (status = 200, description = "The matching records, ordered by extension number", body = Vec<ExtensionBody>),
        (status = 400, description = "A bad or unknown filter", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let filter = parse_filter(req.query_string())?;
    let records = state
        .store
        .list(&filter)
        .await
        .map_err(|e| state.store_failed(&e))?;
    Ok(HttpResponse::Ok().json(records))
}

/// Gets one extension.
#[utoipa::path(
    get,
    path = "/api/extensions/{id}",
    tag = "extensions",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    responses(
        (status = 200, description = "The record", body = ExtensionBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    match state
        .store
        .get(&id)
        .await
        .map_err(|e| state.store_failed(&e))?
    {
        Some(record) => Ok(HttpResponse::Ok().json(record)),
        None => Err(ApiError::no_such_extension(id.as_str())),
    }
}

/// Creates an extension.
#[utoipa::path(
    post,
    path = "/api/extensions",
    tag = "extensions",
    request_body(content = NewExtensionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ExtensionBody),
        (status = 400, description = "Invalid body; `fields` names each field at fault", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 409, description = "The extension number is taken", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn create(
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let new = NewExtension::from_json(&body.0).map_err(|e| ApiError::invalid_fields(&e))?;
    let record = state.writer.create(new).await?;
    // The PBX only reports changes; ask for the list so the new record gets its live state.
    state.created.notify_one();
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/extensions/{}", record.id),
        ))
        .json(record))
}

/// Edits an extension's agent name, department or active flag.
#[utoipa::path(
    put,
    path = "/api/extensions/{id}",
    tag = "extensions",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    request_body(content = PatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The record after the edit", body = ExtensionBody),
        (status = 400, description = "Invalid body, or status fields or `extension` present", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn update(
    path: web::Path<String>,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let patch = ExtensionPatch::from_json(&body.0).map_err(|e| ApiError::invalid_fields(&e))?;
    let id = parse_id(&path)?;
    let record = state.writer.update(id, patch).await?;
    Ok(HttpResponse::Ok().json(record))
}

/// Deletes an extension.
#[utoipa::path(
    delete,
    path = "/api/extensions/{id}",
    tag = "extensions",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn delete(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    state.writer.delete(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mounts the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/extensions")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(crate::error::method_not_allowed)),
    )
    .service(
        web::resource("/api/extensions/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete))
            .default_service(web::to(crate::error::method_not_allowed)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let ok = |q: &str| parse_filter(q).expect(q);
        assert_eq!(ok(""), ExtensionFilter::default());
        assert_eq!(
            ok("status=&department=&is_active="),
            ExtensionFilter::default()
        );
        let f = ok("department=Sales&status=offline&is_active=false");
        assert_eq!(f.department.as_ref().map(Department::as_str), Some("Sales"));
        assert_eq!(f.status, Some(Presence::Offline));
        assert_eq!(f.is_active, Some(false));

        let rows = [
            (
                "status=bogus",
                "status",
                "must be online, offline or unknown",
            ),
            ("is_active=maybe", "is_active", "must be true or false"),
            ("colour=red", "colour", "is not a known filter"),
            (
                "status=online&status=offline",
                "status",
                "is given more than once",
            ),
            (
                "department=%07",
                "department",
                "must not contain control characters",
            ),
        ];
        for (q, field, problem) in rows {
            match parse_filter(q) {
                Err(ApiError::BadRequest { code, fields, .. }) => {
                    assert_eq!(code, "invalid_filter", "{q}");
                    assert_eq!(fields.get(field).map(String::as_str), Some(problem), "{q}");
                }
                other => panic!("{q}: {:?}", other.map(|_| ())),
            }
        }
        // Percent-encoded bytes that are not UTF-8 are refused, not replaced.
        match parse_filter("department=%FF%FE") {
            Err(ApiError::BadRequest { code, fields, .. }) => {
                assert_eq!(code, "invalid_query");
                assert!(fields.contains_key("department"), "{fields:?}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(parse_filter("department=Caf%C3%A9").is_ok());
        assert!(
            parse_filter("department=%E2%80%AESales").is_err(),
            "a bidi override"
        );
    }
}
