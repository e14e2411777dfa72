//! The web UI's files, embedded in the binary so that the UI works offline and the binary
//! is all there is to deploy. `index.html` at `/`, the rest under `/assets/`.
//!
//! No key is needed for these: they hold no data; the page asks for a key and sends it on
//! every API call.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (path under `/assets/`, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "vendor/echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/echarts.min.js"),
    ),
    (
        "vendor/ECHARTS-LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/ECHARTS-LICENSE"),
    ),
];

const INDEX: &[u8] = include_bytes!("../assets/index.html");

/// A strong validator: the content's hash (the files change only with the binary).
fn etag(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(bytes))
}

fn serve(headers: &HeaderMap, content_type: &'static str, bytes: &'static [u8]) -> Response {
    let tag = etag(bytes);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag);
    let common = [
        (header::ETAG, tag),
        // Revalidate every time: a new binary must never run with an old script.
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

/// `GET /`.
pub async fn index(headers: HeaderMap) -> Response {
    serve(&headers, "text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{path}`.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, bytes)) => serve(&headers, content_type, bytes),
        None => (StatusCode::NOT_FOUND, format!("no asset {path}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        let html = std::str::from_utf8(INDEX).unwrap();
        for (path, _, bytes) in FILES {
            assert!(!bytes.is_empty(), "{path} is empty");
            if !path.contains("LICENSE") {
                assert!(
                    html.contains(&format!("/assets/{path}")),
                    "index.html does not load {path}"
                );
            }
        }
    }
}
