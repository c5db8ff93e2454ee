//! The OpenAPI document of the REST API, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `/api/openapi.json`.
//!
//! The schema structs below mirror the JSON of `domain` types for the document only; `domain`
//! stays free of documentation dependencies, and a test checks the mirror against the real
//! serialization so the two cannot drift apart.

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{ErrorBody, ErrorDetail};

/// An extension record as the API returns it.
#[derive(ToSchema)]
#[schema(as = Extension)]
#[allow(dead_code)]
pub struct ExtensionBody {
    /// The store's id: 24 hexadecimal characters.
    #[schema(rename = "_id", example = "65a1b2c3d4e5f60718293a4b")]
    id: String,
    /// The extension number: 2-10 ASCII digits, unique, immutable after creation.
    #[schema(example = "1001")]
    extension: String,
    /// The agent's name: 1-100 characters after trimming, no control characters.
    agent_name: String,
    /// The department: 1-50 characters after trimming, no control characters.
    department: String,
    /// The raw Asterisk extension state (-1 until the PBX reports).
    status_code: i32,
    /// The device state derived from the code: NOT_INUSE, INUSE, BUSY, UNAVAILABLE, RINGING,
    /// RINGINUSE, ONHOLD, UNKNOWN.
    device_state: String,
    /// online, offline or unknown.
    status: String,
    /// When the status code last really changed (RFC 3339 UTC), or null.
    last_status_change: Option<String>,
    /// When the PBX last reported on this extension (RFC 3339 UTC), or null.
    last_seen: Option<String>,
    /// The queues the agent is a member of (`[]` when none); set by the PBX only.
    queues: Vec<QueueMembershipBody>,
    /// The agent's presence, or null when no presence provider is hinted; set by the PBX only.
    presence: Option<PresenceBody>,
    /// The call the agent is being rung for or is talking on, or null; set by the PBX only.
    call: Option<CallBody>,
    /// Whether the extension is in service.
    is_active: bool,
    /// When the record was created (RFC 3339 UTC).
    #[schema(rename = "createdAt")]
    created_at: String,
    /// When a user last edited the record (RFC 3339 UTC).
    #[schema(rename = "updatedAt")]
    updated_at: String,
}

/// One queue membership of an agent.
#[derive(ToSchema)]
#[schema(as = QueueMembership)]
#[allow(dead_code)]
pub struct QueueMembershipBody {
    /// The queue's name.
    #[schema(example = "sales")]
    queue: String,
    /// Whether the agent is paused in this queue.
    paused: bool,
    /// The pause reason the PBX reports, or null.
    paused_reason: Option<String>,
    /// Since when the agent is paused in this queue (RFC 3339 UTC: the PBX's `LastPause`, or
    /// when the pause was seen), or null when not paused.
    paused_since: Option<String>,
    /// The member's penalty.
    penalty: i32,
    /// Calls taken from this queue.
    calls_taken: u32,
    /// When the last call from this queue ended (RFC 3339 UTC), or null.
    last_call: Option<String>,
    /// Whether the agent is on a call from this queue now.
    in_call: bool,
}

/// An agent's presence.
#[derive(ToSchema)]
#[schema(as = AgentPresence)]
#[allow(dead_code)]
pub struct PresenceBody {
    /// Lower-case: available, away, dnd, xa, chat, unavailable, not_set, ...
    #[schema(example = "away")]
    state: String,
    /// The subtype, or null.
    subtype: Option<String>,
    /// The message, or null.
    message: Option<String>,
}

/// The call an agent is being rung for or is talking on.
#[derive(ToSchema)]
#[schema(as = CallInfo)]
#[allow(dead_code)]
pub struct CallBody {
    /// ringing or up.
    #[schema(example = "up")]
    state: String,
    /// The other party's number, or null.
    peer_number: Option<String>,
    /// The other party's name, or null.
    peer_name: Option<String>,
    /// The queue the call came from, or null.
    queue: Option<String>,
    /// When the call reached its current state (RFC 3339 UTC).
    since: String,
}

/// A creation request. Any other member is refused with 400 and named.
#[derive(ToSchema)]
#[schema(as = NewExtension)]
#[allow(dead_code)]
pub struct NewExtensionBody {
    /// 2-10 ASCII digits.
    #[schema(example = "1001")]
    extension: String,
    /// 1-100 characters after trimming.
    #[schema(example = "Alice Smith")]
    agent_name: String,
    /// 1-50 characters after trimming.
    #[schema(example = "Sales")]
    department: String,
    /// Defaults to true.
    is_active: Option<bool>,
}

/// An edit: every member optional. `extension` and the status fields are refused with 400.
#[derive(ToSchema)]
#[schema(as = ExtensionPatch)]
#[allow(dead_code)]
pub struct PatchBody {
    /// 1-100 characters after trimming.
    agent_name: Option<String>,
    /// 1-50 characters after trimming.
    department: Option<String>,
    /// Whether the extension is in service.
    is_active: Option<bool>,
}

/// A pause request.
#[derive(ToSchema)]
#[schema(as = PauseRequest)]
#[allow(dead_code)]
pub struct PauseBody {
    /// Why: 1-64 characters after trimming, no control characters.
    #[schema(example = "Lunch")]
    reason: String,
    /// Only this queue; by default every queue of the agent.
    #[schema(example = "sales")]
    queue: Option<String>,
}

/// Adds the bearer scheme the tokens use.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "extstatus",
        description = "Live extension status from Asterisk AMI. With an admin token configured, \
                       POST/PUT/DELETE need it as a bearer token; with a viewer token configured, \
                       reads need the viewer or the admin token.",
    ),
    paths(
        crate::rest::list,
        crate::rest::get,
        crate::rest::create,
        crate::rest::update,
        crate::rest::delete,
        crate::rest::pause,
        crate::rest::resume,
        crate::rest::queues,
        crate::analytics::history,
        crate::analytics::time_in_state,
        crate::analytics::departments,
        crate::health::healthz,
        crate::health::readyz,
        crate::health::metrics,
        crate::ws::upgrade,
        openapi_json,
    ),
    components(schemas(
        ExtensionBody,
        QueueMembershipBody,
        PresenceBody,
        CallBody,
        NewExtensionBody,
        PatchBody,
        PauseBody,
        crate::rest::QueueBody,
        crate::rest::QueueMemberBody,
        ErrorBody,
        ErrorDetail,
        crate::analytics::HistoryBody,
        crate::analytics::DepartmentNow,
        crate::analytics::IdleAgent,
        crate::health::Readiness,
        crate::health::AmiReadiness,
        crate::health::StoreReadiness,
        crate::health::Health,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "extensions", description = "Extension records"),
        (name = "call-center", description = "Queues, and pausing agents through the PBX (--ami-actions)"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "live", description = "The WebSocket stream"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API"))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Mounts the document.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/openapi.json")
            .route(crate::rest::read().to(openapi_json))
            .default_service(crate::error::not_allowed("GET, HEAD")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, methods) in [
            ("/api/extensions", &["get", "post"][..]),
            ("/api/extensions/{id}", &["get", "put", "delete"][..]),
            ("/api/extensions/{id}/pause", &["post", "delete"][..]),
            ("/api/queues", &["get"][..]),
            ("/healthz", &["get"][..]),
            ("/readyz", &["get"][..]),
            ("/metrics", &["get"][..]),
            ("/ws", &["get"][..]),
            ("/api/openapi.json", &["get"][..]),
        ] {
            for m in methods {
                assert!(paths[path].get(*m).is_some(), "{m} {path} missing");
            }
        }
    }

    #[test]
    fn the_record_schema_matches_the_real_json() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let props = doc["components"]["schemas"]["Extension"]["properties"]
            .as_object()
            .expect("Extension schema");
        let mut documented: Vec<&str> = props.keys().map(String::as_str).collect();
        documented.sort_unstable();
        let record = domain::Extension::create(
            domain::RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
            domain::NewExtension {
                extension: domain::ExtensionNumber::parse("1001").expect("ext"),
                agent_name: domain::AgentName::parse("A").expect("name"),
                department: domain::Department::parse("D").expect("dept"),
                is_active: true,
            },
            domain::now(),
        );
        let json = serde_json::to_value(record).expect("record");
        let mut real: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        real.sort_unstable();
        assert_eq!(documented, real);
        let create = doc["components"]["schemas"]["NewExtension"]["properties"]
            .as_object()
            .expect("NewExtension schema");
        let mut documented: Vec<&str> = create.keys().map(String::as_str).collect();
        documented.sort_unstable();
        let mut fields = domain::NewExtension::FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(documented, fields);
    }
}
