//! An image uploaded with a request's other fields, as Venice's image routes take it
//! (background removal, editing, upscaling): a multipart body (a file part named `image`, or a
//! text part holding base64, and a text part per field) or JSON (`image` in base64, raw or a
//! `data:` URL). `image_url` is refused everywhere: the gateway fetches no URL for a client.
//! The image is checked to be a PNG, JPEG or WebP within [`MAX_UPLOAD_BYTES`] and a bound on
//! its sides, read from its header, before anything is paid.

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};
use wire::error::{ApiError, ErrorCode};
use wire::images::{ImageFormat, MAX_UPLOAD_BYTES};

/// Largest body of a route that takes an upload: the largest image in base64, and the rest.
pub(crate) const MAX_BODY_BYTES: usize = MAX_UPLOAD_BYTES / 3 * 4 + 64 * 1024;
/// Most parts of a multipart upload.
const MAX_PARTS: usize = 16;

/// An uploaded image, checked, and the request's other fields.
pub(crate) struct Upload {
    pub(crate) image: Vec<u8>,
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// The other fields, as JSON gave them (a multipart text part is a string).
    pub(crate) fields: Map<String, Value>,
}

impl Upload {
    /// A text field, if given.
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::invalid(name, format!("{name} is a string"))),
        }
    }

    /// A number field, if given (a multipart text part is read as one).
    pub(crate) fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => Ok(number.as_f64()),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(name, format!("{name} is a number"))),
            Some(_) => Err(ApiError::invalid(name, format!("{name} is a number"))),
        }
    }
}

/// Whether the body is multipart.
pub(crate) fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// Refuses a body that is neither multipart nor JSON.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_multipart(headers) {
        Ok(())
    } else {
        crate::pipeline::check_json_content_type(headers)
    }
}

/// Reads the image and the fields named in `known` (others are refused, naming them) from
/// either form of body; `shape` says what the body should be. Images are held to
/// `max_side` pixels a side.
pub(crate) fn read(
    headers: &HeaderMap,
    body: &Bytes,
    known: &[&str],
    max_side: usize,
    shape: &str,
) -> Result<Upload, ApiError> {
    let (image, fields) = if is_multipart(headers) {
        let parts =
            crate::pipeline::admission::multipart_parts(headers, body, MAX_PARTS, "image", shape)?;
        let mut image = None;
        let mut fields = Map::new();
        for part in parts {
            if part.name == "image" {
                // A file part is the image; a text part is base64, as in JSON.
                image = Some(if part.file_name.is_some() {
                    part.bytes
                } else {
                    decode_base64(&String::from_utf8_lossy(&part.bytes))?
                });
            } else {
                fields.insert(
                    part.name,
                    Value::String(String::from_utf8_lossy(&part.bytes).into_owned()),
                );
            }
        }
        (image, fields)
    } else {
        let mut fields: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|error| ApiError::invalid("image", format!("{shape}: {error}")))?;
        let image = match fields.remove("image") {
            Some(Value::String(text)) => Some(decode_base64(&text)?),
            None | Some(Value::Null) => None,
            Some(_) => return Err(ApiError::invalid("image", shape)),
        };
        (image, fields)
    };
    if fields.contains_key("image_url") {
        return Err(ApiError::invalid(
            "image_url",
            "the gateway fetches no URL for a client: send the image itself in `image`",
        ));
    }
    if let Some(unknown) = fields.keys().find(|name| !known.contains(&name.as_str())) {
        return Err(ApiError::invalid(
            unknown.as_str(),
            format!("{unknown} is not a field of this request"),
        ));
    }
    let image = image.ok_or_else(|| ApiError::invalid("image", shape))?;
    let (width, height) = checked(&image, max_side)?;
    Ok(Upload {
        image,
        width,
        height,
        fields,
    })
}

fn decode_base64(text: &str) -> Result<Vec<u8>, ApiError> {
    let payload = text
        .split_once("base64,")
        .map_or(text, |(_, payload)| payload);
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| ApiError::invalid("image", "the image is not base64"))
}

/// Checks an image: within the size bound, a PNG, JPEG or WebP of at most `max_side` pixels
/// a side. Its width and height.
fn checked(image: &[u8], max_side: usize) -> Result<(usize, usize), ApiError> {
    if image.len() > MAX_UPLOAD_BYTES {
        return Err(ApiError::invalid(
            "image",
            format!(
                "the image is {} bytes; at most {MAX_UPLOAD_BYTES} are taken",
                image.len()
            ),
        ));
    }
    if ImageFormat::sniff(image).is_none() {
        return Err(ApiError::invalid(
            "image",
            "the image is not a PNG, JPEG or WebP",
        ));
    }
    let size = imagesize::blob_size(image)
        .map_err(|_| ApiError::invalid("image", "the image's size cannot be read"))?;
    if size.width == 0 || size.height == 0 || size.width > max_side || size.height > max_side {
        return Err(ApiError::invalid(
            "image",
            format!(
                "the image is {}x{}; at most {max_side}x{max_side} pixels are taken",
                size.width, size.height
            ),
        ));
    }
    Ok((size.width, size.height))
}

/// The base64 of an upload, for a provider.
pub(crate) fn encoded(image: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(image)
}

/// A provider's answer that must be an image of `format` and `size`: an error otherwise.
pub(crate) fn check_answer(
    bytes: &[u8],
    format: ImageFormat,
    size: (usize, usize),
) -> Result<(), &'static str> {
    if ImageFormat::sniff(bytes) != Some(format) {
        return Err("the provider's answer is not an image of the asked format");
    }
    match imagesize::blob_size(bytes) {
        Ok(answer) if (answer.width, answer.height) == size => Ok(()),
        _ => Err("the provider's image is not of the asked size"),
    }
}

/// An error for a refused upload that is the gateway's to fix.
pub(crate) fn encode_failed() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "the provider request could not be encoded",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: &str = "the image in `image`";

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    fn json(body: serde_json::Value) -> Result<Upload, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        read(
            &headers,
            &Bytes::from(body.to_string()),
            &["prompt", "scale"],
            4096,
            SHAPE,
        )
    }

    #[test]
    fn an_upload_is_read_from_json_with_its_fields_and_held_to_its_bounds() {
        let image = png(16, 8);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
        let upload = json(serde_json::json!({"image": encoded, "prompt": "sky", "scale": "4"}))
            .expect("read");
        assert_eq!(upload.image, image);
        assert_eq!((upload.width, upload.height), (16, 8));
        assert_eq!(upload.text("prompt").expect("text").as_deref(), Some("sky"));
        assert_eq!(upload.number("scale").expect("number"), Some(4.0));
        let data_url = format!("data:image/png;base64,{encoded}");
        assert_eq!(
            json(serde_json::json!({"image": data_url}))
                .expect("read")
                .image,
            image
        );
        for (body, param) in [
            (
                serde_json::json!({"image_url": "https://example.com/a.png"}),
                "image_url",
            ),
            (serde_json::json!({"image": "not base64!"}), "image"),
            (serde_json::json!({}), "image"),
            (serde_json::json!({"image": encoded, "colour": 2}), "colour"),
            (
                serde_json::json!({"image": base64::engine::general_purpose::STANDARD.encode(png(5000, 8))}),
                "image",
            ),
            (
                serde_json::json!({"image": base64::engine::general_purpose::STANDARD.encode(b"GIF89a")}),
                "image",
            ),
        ] {
            let error = json(body.clone()).err().expect("refused");
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
    }
}
