//! The live dashboard at `/`: the page and its assets, embedded in the binary so that a single
//! file deploys the whole server and no Node build step is ever needed.
//!
//! The assets are plain ES modules and CSS under `bins/api-server/assets/`; `docs/dashboard.md`
//! describes the page. They are served with an `ETag` and `Cache-Control: no-cache`, so a
//! browser revalidates with one cheap request and never runs a stale page after an upgrade,
//! and with a Content-Security-Policy that allows only this origin's scripts and styles.
//!
//! `types.d.ts` and `constants.js` are generated from the Rust types (see the `typescript`
//! test module); a test fails when the committed files are out of date.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::config::Config;

/// What the page needs to know besides the records, served as `GET /api/ui-config` (behind
/// the viewer token, like every `/api/*` read): whether pause and resume are offered, the
/// pause reasons to offer, and when a queue's longest wait turns amber and red.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UiSettings {
    /// Whether the server was started with `--ami-actions` (pause and resume allowed).
    pub ami_actions: bool,
    /// `--pause-reasons`, in the order given.
    pub pause_reasons: Vec<String>,
    /// `--queue-wait-amber`, in seconds.
    pub queue_wait_amber_s: f64,
    /// `--queue-wait-red`, in seconds.
    pub queue_wait_red_s: f64,
}

impl UiSettings {
    /// The page's settings from the server's configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            ami_actions: config.ami.actions,
            pause_reasons: config.ui.pause_reasons.clone(),
            queue_wait_amber_s: config.ui.queue_wait_amber.as_secs_f64(),
            queue_wait_red_s: config.ui.queue_wait_red.as_secs_f64(),
        }
    }
}

/// One embedded file.
struct Asset {
    /// The file name under `/assets/` (the page itself is served at `/`).
    name: &'static str,
    /// The `Content-Type` it is served with.
    content_type: &'static str,
    /// The file's bytes.
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
/// The declarations are served for people who script against the API; browsers never load them.
const TS: &str = "text/plain; charset=utf-8";

/// The page served at `/`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: HTML,
    body: include_bytes!("../assets/index.html"),
};

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "board.js",
        content_type: JS,
        body: include_bytes!("../assets/board.js"),
    },
    Asset {
        name: "live.js",
        content_type: JS,
        body: include_bytes!("../assets/live.js"),
    },
    Asset {
        name: "manage.js",
        content_type: JS,
        body: include_bytes!("../assets/manage.js"),
    },
    Asset {
        name: "format.js",
        content_type: JS,
        body: include_bytes!("../assets/format.js"),
    },
    Asset {
        name: "queues.js",
        content_type: JS,
        body: include_bytes!("../assets/queues.js"),
    },
    Asset {
        name: "pause.js",
        content_type: JS,
        body: include_bytes!("../assets/pause.js"),
    },
    Asset {
        name: "request.js",
        content_type: JS,
        body: include_bytes!("../assets/request.js"),
    },
    Asset {
        name: "charts.js",
        content_type: JS,
        body: include_bytes!("../assets/charts.js"),
    },
    Asset {
        name: "constants.js",
        content_type: JS,
        body: include_bytes!("../assets/constants.js"),
    },
    Asset {
        name: "app.css",
        content_type: CSS,
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: SVG,
        body: include_bytes!("../assets/favicon.svg"),
    },
    Asset {
        name: "types.d.ts",
        content_type: TS,
        body: include_bytes!("../assets/types.d.ts"),
    },
];

/// What the page may load: scripts, styles, images and connections (fetch and the WebSocket)
/// from this origin only; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// Mounts the page at `/` and its assets under `/assets/`, both open whatever tokens are
/// configured (the page asks for a token itself when the API answers 401), and
/// `GET /api/ui-config`, which needs a [`UiSettings`] in the app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::error::not_allowed;
    cfg.service(
        web::resource("/api/ui-config")
            .route(crate::rest::read().to(ui_config))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/")
            .route(web::get().to(index))
            .route(web::head().to(index))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/assets/{name}")
            .route(web::get().to(asset))
            .route(web::head().to(asset))
            .default_service(not_allowed("GET, HEAD")),
    );
}

async fn ui_config(settings: web::Data<UiSettings>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(settings.get_ref())
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX, etag(usize::MAX))
}

async fn asset(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().position(|a| a.name == name.as_str()) {
        Some(i) => serve(&req, &ASSETS[i], etag(i)),
        None => HttpResponse::NotFound().json(serde_json::json!({
            "error": {
                "code": "not_found",
                "message": format!("The dashboard has no asset named {:?}.", name.as_str()),
            }
        })),
    }
}

/// Answers with the asset, or with 304 when the browser already holds this version.
fn serve(req: &HttpRequest, asset: &Asset, etag: &'static str) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| if_none_match(v, etag));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if asset.content_type == HTML {
        res.insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    }
    if fresh {
        res.finish()
    } else {
        res.content_type(asset.content_type).body(asset.body)
    }
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC 9110 asks for it).
fn if_none_match(header: &str, etag: &str) -> bool {
    let strong = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == strong)
}

/// The entity tag of asset `i` (`usize::MAX` for the page), computed once from its bytes.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<(String, Vec<String>)> = OnceLock::new();
    let (page, assets) = TAGS.get_or_init(|| {
        (
            tag_of(INDEX.body),
            ASSETS.iter().map(|a| tag_of(a.body)).collect(),
        )
    });
    assets.get(i).unwrap_or(page)
}

/// A strong entity tag from a 64-bit FNV-1a hash of the bytes: stable across builds and
/// processes, so several servers behind one balancer agree on it.
fn tag_of(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod typescript;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::{App, test as web_test};

    async fn get(
        path: &str,
        if_none_match: Option<&str>,
    ) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        let app = web_test::init_service(App::new().configure(configure)).await;
        let mut req = web_test::TestRequest::get().uri(path);
        if let Some(tag) = if_none_match {
            req = req.insert_header((header::IF_NONE_MATCH, tag));
        }
        let res = web_test::call_service(&app, req.to_request()).await;
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = web_test::read_body(res).await.to_vec();
        (status, headers, body)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[actix_web::test]
    async fn every_path_answers_with_its_type_and_cache_headers() {
        let rows = [
            ("/", StatusCode::OK, Some(HTML)),
            ("/assets/app.js", StatusCode::OK, Some(JS)),
            ("/assets/constants.js", StatusCode::OK, Some(JS)),
            ("/assets/app.css", StatusCode::OK, Some(CSS)),
            ("/assets/favicon.svg", StatusCode::OK, Some(SVG)),
            ("/assets/types.d.ts", StatusCode::OK, Some(TS)),
            ("/assets/nope.js", StatusCode::NOT_FOUND, None),
            ("/assets/..%2Fsrc%2Flib.rs", StatusCode::NOT_FOUND, None),
        ];
        for (path, want, content_type) in rows {
            let (status, headers, body) = get(path, None).await;
            assert_eq!(status, want, "{path}");
            match content_type {
                Some(ct) => {
                    assert_eq!(header(&headers, "content-type"), Some(ct), "{path}");
                    assert_eq!(
                        header(&headers, "cache-control"),
                        Some("no-cache"),
                        "{path}"
                    );
                    assert!(header(&headers, "etag").is_some(), "{path}");
                    assert!(!body.is_empty(), "{path}");
                }
                None => {
                    let json: serde_json::Value =
                        serde_json::from_slice(&body).expect("json error");
                    assert_eq!(json["error"]["code"], "not_found", "{path}");
                }
            }
        }
    }

    #[actix_web::test]
    async fn the_page_is_locked_down() {
        let (_, headers, body) = get("/", None).await;
        let csp = header(&headers, "content-security-policy").expect("csp");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        let html = String::from_utf8(body).expect("utf-8");
        // No inline script or style could run under that policy, so none may be written.
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style=\""), "inline style");
    }

    #[actix_web::test]
    async fn a_matching_etag_gets_304_without_a_body() {
        let (_, headers, _) = get("/assets/app.js", None).await;
        let tag = header(&headers, "etag").expect("etag").to_owned();
        let rows = [
            (tag.clone(), StatusCode::NOT_MODIFIED),
            (format!("W/{tag}"), StatusCode::NOT_MODIFIED),
            (format!("\"other\", {tag}"), StatusCode::NOT_MODIFIED),
            ("*".to_owned(), StatusCode::NOT_MODIFIED),
            ("\"other\"".to_owned(), StatusCode::OK),
        ];
        for (sent, want) in rows {
            let (status, headers, body) = get("/assets/app.js", Some(&sent)).await;
            assert_eq!(status, want, "{sent}");
            assert_eq!(header(&headers, "etag"), Some(tag.as_str()));
            assert_eq!(body.is_empty(), want == StatusCode::NOT_MODIFIED, "{sent}");
        }
    }

    /// Every `/assets/...` reference in the page and every `./x.js` import in the modules names
    /// an embedded asset, so a file added to the page cannot be forgotten here.
    #[test]
    fn every_reference_is_embedded() {
        let mut referenced = Vec::new();
        let html = std::str::from_utf8(INDEX.body).expect("utf-8");
        for part in html.split("\"/assets/").skip(1) {
            referenced.push(part.split('"').next().unwrap_or_default().to_owned());
        }
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                if let Some(rest) = line.split("from \"./").nth(1) {
                    referenced.push(rest.split('"').next().unwrap_or_default().to_owned());
                }
            }
        }
        assert!(referenced.len() > 8, "{referenced:?}");
        for name in referenced {
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is referenced but not embedded"
            );
        }
    }

    #[actix_web::test]
    async fn the_page_settings_come_from_the_configuration() {
        let mut config = Config::default();
        config.ami.actions = true;
        config.ui.pause_reasons = vec!["Lunch".to_owned(), "Coaching".to_owned()];
        config.ui.queue_wait_amber = std::time::Duration::from_millis(1500);
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(UiSettings::from_config(&config)))
                .configure(configure),
        )
        .await;
        let req = web_test::TestRequest::get()
            .uri("/api/ui-config")
            .to_request();
        let json: serde_json::Value = web_test::call_and_read_body_json(&app, req).await;
        assert_eq!(
            json,
            serde_json::json!({
                "ami_actions": true,
                "pause_reasons": ["Lunch", "Coaching"],
                "queue_wait_amber_s": 1.5,
                "queue_wait_red_s": 90.0,
            })
        );
    }

    #[test]
    fn tags_are_stable_and_distinct() {
        assert_eq!(tag_of(b""), "\"cbf29ce484222325\"");
        assert_ne!(tag_of(b"a"), tag_of(b"b"));
        let all: std::collections::HashSet<_> = (0..ASSETS.len()).map(etag).collect();
        assert_eq!(all.len(), ASSETS.len());
    }
}
