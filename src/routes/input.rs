//! Reading request bodies: form or JSON into one struct, with clear 4xx
//! answers for everything malformed.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::negotiate::is_json_media_type;

/// Largest body accepted on any route, in bytes.
pub const BODY_LIMIT: usize = 16 * 1024;

/// How the body was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
    /// No body at all (allowed only where `T` has no required fields).
    Empty,
}

/// A body deserialised into `T` from either a form or JSON.
#[derive(Debug)]
pub struct Input<T> {
    /// The fields.
    pub value: T,
    /// How they came.
    pub kind: BodyKind,
}

impl<S, T> FromRequest<S> for Input<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| AppError::BadRequest("invalid Content-Type header".into()))?;
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(AppError::PayloadTooLarge);
        }
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| AppError::PayloadTooLarge)?;
        let kind = match content_type.as_deref() {
            Some(ct) if is_json_media_type(ct) => BodyKind::Json,
            Some(ct)
                if ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded") =>
            {
                BodyKind::Form
            }
            None if bytes.is_empty() => BodyKind::Empty,
            _ => return Err(AppError::UnsupportedMediaType),
        };
        let value = match kind {
            BodyKind::Json => serde_json::from_slice::<T>(&bytes).map_err(json_error)?,
            BodyKind::Form => {
                let map = parse_form(&bytes)?;
                serde_json::from_value::<T>(serde_json::Value::Object(map)).map_err(field_error)?
            }
            BodyKind::Empty => {
                serde_json::from_value::<T>(serde_json::Value::Object(serde_json::Map::new()))
                    .map_err(field_error)?
            }
        };
        Ok(Self { value, kind })
    }
}

fn json_error(e: serde_json::Error) -> AppError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => field_error(e),
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::BadRequest("malformed JSON body".into())
        }
    }
}

fn field_error(e: serde_json::Error) -> AppError {
    // serde's data errors name the field ("missing field `password`"), but
    // a value of the wrong type is quoted ("invalid type: integer
    // `12345678`, expected a string"): only what was expected is kept, so
    // that no value (a password sent as a number) is ever repeated back.
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    let text = match (text.split_once(':'), text.split_once(", expected ")) {
        (Some((kind, _)), Some((_, expected))) if kind.starts_with("invalid ") => {
            format!("{kind}: expected {expected}")
        }
        _ => text.to_owned(),
    };
    AppError::Unprocessable(text)
}

/// Decodes `application/x-www-form-urlencoded` strictly: invalid
/// percent-encoding or UTF-8 and repeated fields are refused rather than
/// silently replaced.
fn parse_form(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    let mut map = serde_json::Map::new();
    for pair in bytes.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |&b| b == b'=');
        let key = decode(it.next().unwrap_or_default())?;
        let value = decode(it.next().unwrap_or_default())?;
        if map
            .insert(key.clone(), serde_json::Value::String(value))
            .is_some()
        {
            return Err(AppError::BadRequest(format!("field {key:?} given twice")));
        }
    }
    Ok(map)
}

fn decode(raw: &[u8]) -> Result<String, AppError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes)
        .map_err(|_| AppError::BadRequest("form body is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_strictly() {
        let m = parse_form(b"username=Zo%C3%AB&password=a+b%26c").expect("valid");
        assert_eq!(m["username"], "Zoë");
        assert_eq!(m["password"], "a b&c");
        assert!(parse_form(b"username=%FF").is_err());
        assert!(parse_form(b"a=1&a=2").is_err());
    }
}
