//! One message of a conversation: its role, its text, the parts beside text it carries
//! (images, audio, files, video, passed to providers as sent), and the calls or call result
//! it carries; and how a message's `content` is read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::tools::ToolCall;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// Most content parts one message may hold.
pub const MAX_CONTENT_PARTS: usize = 64;

/// One message after validation: text, what else it carries (images, audio, files, video),
/// and the calls or call result it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireMessage", try_from = "WireMessage")]
pub struct Message {
    pub role: Role,
    /// The text: the content string, or every text part joined.
    pub content: String,
    /// The content parts as sent, when the message carries more than text; it goes to the
    /// provider so. Empty for text alone.
    pub parts: Vec<Value>,
    /// The calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
    /// The function a tool message answers (legacy `function` messages name it only so).
    pub name: Option<String>,
}

/// A message as it crosses to a provider: `content` a string, or the list of parts.
#[derive(Serialize, Deserialize)]
struct WireMessage {
    role: Role,
    #[serde(default)]
    content: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl From<Message> for WireMessage {
    fn from(message: Message) -> Self {
        Self {
            role: message.role,
            content: if message.parts.is_empty() {
                Value::String(message.content)
            } else {
                Value::Array(message.parts)
            },
            tool_calls: message.tool_calls,
            tool_call_id: message.tool_call_id,
            name: message.name,
        }
    }
}

impl TryFrom<WireMessage> for Message {
    type Error = String;

    fn try_from(wire: WireMessage) -> Result<Self, String> {
        let (content, parts) =
            message_content(wire.content, "content").map_err(|error| error.message)?;
        Ok(Self {
            role: wire.role,
            content,
            parts,
            tool_calls: wire.tool_calls,
            tool_call_id: wire.tool_call_id,
            name: wire.name,
        })
    }
}

impl Message {
    /// A message of text alone.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            parts: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// The kinds of input beside text this message carries: `image`, `audio`, `video`, `file`.
    pub fn media(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("image_url") => Some("image"),
                Some("input_audio") => Some("audio"),
                Some("video_url") => Some("video"),
                Some("file") => Some("file"),
                _ => None,
            })
    }
}

/// Reads `content`: a string, null, or a list of parts. Returns the text (text parts joined)
/// and, when there are parts other than text, the whole list as sent.
pub(crate) fn message_content(
    content: Value,
    param: &str,
) -> Result<(String, Vec<Value>), ApiError> {
    match content {
        Value::Null => Ok((String::new(), Vec::new())),
        Value::String(text) => Ok((text, Vec::new())),
        Value::Array(parts) => {
            if parts.len() > MAX_CONTENT_PARTS {
                return Err(ApiError::invalid(
                    param,
                    format!("{param} holds at most {MAX_CONTENT_PARTS} parts"),
                ));
            }
            let mut text = String::new();
            let mut media = false;
            for (index, part) in parts.iter().enumerate() {
                let part_param = format!("{param}[{index}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                // Each kind of part carries an object of its own name with these fields.
                let need = |field: &str, required: &[&str]| -> Result<(), ApiError> {
                    let object = part.get(field).filter(|value| value.is_object());
                    let missing = required.iter().find(|name| {
                        object
                            .and_then(|object| object.get(**name))
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                    });
                    match (object, missing) {
                        (Some(_), None) => Ok(()),
                        (_, Some(name)) => Err(ApiError::invalid(
                            format!("{part_param}.{field}.{name}"),
                            format!("a {kind} part needs {field}.{name}, a string"),
                        )),
                        (None, None) => Err(ApiError::invalid(
                            format!("{part_param}.{field}"),
                            format!("a {kind} part needs {field}, an object"),
                        )),
                    }
                };
                match kind {
                    "text" => match part.get("text") {
                        Some(Value::String(piece)) => text.push_str(piece),
                        _ => {
                            return Err(ApiError::invalid(
                                format!("{part_param}.text"),
                                format!("{part_param}.text must be a string"),
                            ));
                        }
                    },
                    "image_url" => need("image_url", &["url"])?,
                    "input_audio" => need("input_audio", &["data", "format"])?,
                    "video_url" => need("video_url", &["url"])?,
                    "file" => {
                        let file = part.get("file");
                        let named = ["file_data", "file_id"].iter().any(|field| {
                            file.and_then(|file| file.get(*field))
                                .and_then(Value::as_str)
                                .is_some_and(|value| !value.is_empty())
                        });
                        if !named {
                            return Err(ApiError::invalid(
                                format!("{part_param}.file"),
                                "a file part needs file.file_data (a data URI) or file.file_id",
                            ));
                        }
                    }
                    "" => {
                        return Err(ApiError::invalid(
                            part_param.clone(),
                            format!("{part_param} needs a \"type\""),
                        ));
                    }
                    other => {
                        return Err(ApiError::invalid(
                            part_param,
                            format!(
                                "content parts are text, image_url, input_audio, video_url or file, not {other:?}"
                            ),
                        ));
                    }
                }
                media |= kind != "text";
            }
            Ok((text, if media { parts } else { Vec::new() }))
        }
        _ => Err(ApiError::invalid(
            param,
            format!("{param} must be a string or a list of content parts"),
        )),
    }
}
