//! The fan's page (web/): built into the binary, so `/` works wherever the
//! gateway is started; `ANTEROOM_WEB_DIR` serves a folder instead (a page
//! being worked on, or a site's own).
//!
//! Only the page's own files are public ([`is_public`]): web/ also holds the
//! browser tests, the benchmarks' scripts and their node_modules, which are
//! nobody's business and are not built in.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use super::error::ApiError;

/// The page's files as they were when the binary was built. `*` crosses
/// folders in these patterns, so the exclusions come first.
#[derive(rust_embed::Embed)]
#[folder = "web/"]
#[exclude = "node_modules/*"]
#[exclude = "tests/*"]
#[exclude = "bench/*"]
#[include = "*.html"]
#[include = "*.js"]
#[include = "*.css"]
#[include = "*.png"]
#[include = "*.svg"]
#[include = "*.ico"]
#[include = "i18n/*.json"]
struct Page;

/// Where the page comes from.
#[derive(Debug, Clone)]
pub enum Assets {
    /// Built into the binary.
    Embedded,
    /// A folder on disk (`ANTEROOM_WEB_DIR`).
    Dir(PathBuf),
}

impl Assets {
    /// The folder when one is given, else the built-in page. A folder
    /// without an `index.html` is served all the same (an operator may be
    /// about to fill it) but said out loud, since `/` will answer 404.
    pub fn new(dir: Option<&Path>) -> Self {
        match dir {
            Some(dir) => {
                if !dir.join("index.html").is_file() {
                    tracing::warn!(
                        dir = %dir.display(),
                        "ANTEROOM_WEB_DIR has no index.html: / will answer 404"
                    );
                }
                tracing::info!(dir = %dir.display(), "serving the web page from a folder");
                Assets::Dir(dir.to_owned())
            }
            None => Assets::Embedded,
        }
    }

    /// Answers a request for `path` (any path; only public ones are found).
    pub async fn serve(&self, req: Request<Body>) -> Response {
        let path = req.uri().path().to_owned();
        if !is_public(&path) {
            return not_found();
        }
        match self {
            Assets::Embedded => embedded(&path, req.headers()),
            Assets::Dir(dir) => {
                let web = ServeDir::new(dir);
                match tower::ServiceExt::oneshot(web, req).await {
                    Ok(res) if res.status() == StatusCode::NOT_FOUND => not_found(),
                    Ok(res) => res.into_response(),
                    Err(never) => match never {},
                }
            }
        }
    }
}

/// `/`, a top-level file of the page (html, js, css, images), or one of its
/// message catalogues (`/i18n/<lang>.json`).
pub fn is_public(path: &str) -> bool {
    // The folder server decodes the path after this check: an encoded
    // character (`%2F`) would reach a file this check never saw.
    if path.contains('%') {
        return false;
    }
    let name = path.trim_start_matches('/');
    let plain = |name: &str, exts: &[&str]| {
        !name.is_empty()
            && !name.contains('/')
            && !name.starts_with('.')
            && exts.iter().any(|ext| name.ends_with(ext))
    };
    name.is_empty()
        || plain(name, &[".html", ".js", ".css", ".png", ".svg", ".ico"])
        || name
            .strip_prefix("i18n/")
            .is_some_and(|file| plain(file, &[".json"]))
}

/// A built-in file, revalidated by its content hash (the file names carry
/// no version, so browsers must ask; an unchanged file costs a 304).
fn embedded(path: &str, headers: &HeaderMap) -> Response {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    let Some(file) = Page::get(name) else {
        return not_found();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex(&hash[..16]));
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut res = match cached {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => {
            let mut res = Response::new(Body::from(file.data.into_owned()));
            if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
                res.headers_mut().insert(header::CONTENT_TYPE, mime);
            }
            res
        }
    };
    let h = res.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn not_found() -> Response {
    ApiError::not_found("not_found", "no such route").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_is_public() {
        for path in [
            "/",
            "/index.html",
            "/anteroom.js",
            "/app.js",
            "/style.css",
            "/i18n/ko.json",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/package.json",
            "/node_modules/playwright-core/index.js",
            "/tests/browser.test.mjs",
            "/.env",
            "/../Cargo.toml",
            "/i18n/../package.json",
            "/node_modules%2Fplaywright-core%2Findex.js",
            "/i18n%2Fko.json",
            "/i18n/.hidden.json",
            "/i18n/",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn the_page_is_built_in_and_nothing_else_of_web_is() {
        let files: Vec<String> = Page::iter().map(|f| f.into_owned()).collect();
        for page in ["index.html", "anteroom.js", "app.js", "style.css"] {
            assert!(files.iter().any(|f| f == page), "{page} in {files:?}");
        }
        for file in &files {
            assert!(is_public(&format!("/{file}")), "{file} is built in");
        }
    }
}
