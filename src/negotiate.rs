//! Content negotiation: JSON for API clients, HTML for browsers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

/// What kind of response the client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An HTML page (browsers, and anything that does not ask for JSON).
    Html,
    /// A JSON document.
    Json,
}

impl Format {
    /// JSON when the request sends a JSON body or its `Accept` prefers
    /// `application/json` to `text/html`; HTML otherwise.
    #[must_use]
    pub fn of(headers: &HeaderMap) -> Self {
        Self::from_headers(
            headers.get_all(header::ACCEPT).iter(),
            headers.get(header::CONTENT_TYPE),
        )
    }

    /// [`Format::of`] from the two headers that decide it.
    pub fn from_headers<'a>(
        accept: impl IntoIterator<Item = &'a HeaderValue>,
        content_type: Option<&HeaderValue>,
    ) -> Self {
        let json_body = content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if json_body || prefers_json(accept) {
            Self::Json
        } else {
            Self::Html
        }
    }
}

/// Whether a `Content-Type` value is JSON (`application/json`, with or without parameters).
#[must_use]
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Each media range in `Accept` with its quality.
fn ranges<'a>(
    accept: impl IntoIterator<Item = &'a HeaderValue>,
) -> impl Iterator<Item = (&'a str, f32)> {
    accept
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (media, q)
        })
}

fn prefers_json<'a>(accept: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let mut json = 0.0_f32;
    let mut html = 0.0_f32;
    for (media, q) in ranges(accept) {
        if media.eq_ignore_ascii_case("application/json") {
            json = json.max(q);
        } else if media.eq_ignore_ascii_case("text/html") {
            html = html.max(q);
        }
    }
    json > 0.0 && json > html
}

/// Whether `Accept` names `text/html` and prefers it to every other type
/// it names (a browser navigating; `fetch` sends `*/*`).
#[cfg(feature = "server")]
pub(crate) fn prefers_html(headers: &HeaderMap) -> bool {
    let mut html = 0.0_f32;
    let mut other = 0.0_f32;
    for (media, q) in ranges(headers.get_all(header::ACCEPT)) {
        if media.eq_ignore_ascii_case("text/html") {
            html = html.max(q);
        } else if !media.eq_ignore_ascii_case("application/xhtml+xml") && media != "*/*" {
            other = other.max(q);
        }
    }
    html > 0.0 && html >= other
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn browsers_get_html() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(Format::of(&with(header::ACCEPT, browser)), Format::Html);
        assert_eq!(Format::of(&HeaderMap::new()), Format::Html);
        assert_eq!(Format::of(&with(header::ACCEPT, "*/*")), Format::Html);
    }

    #[test]
    fn api_clients_get_json() {
        assert_eq!(
            Format::of(&with(header::ACCEPT, "application/json")),
            Format::Json
        );
        assert_eq!(
            Format::of(&with(header::ACCEPT, "text/html;q=0.5, application/json")),
            Format::Json
        );
        assert_eq!(
            Format::of(&with(
                header::CONTENT_TYPE,
                "application/json; charset=utf-8"
            )),
            Format::Json
        );
    }
}
