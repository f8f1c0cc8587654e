//! Tool calling in OpenAI's shape: the functions a client offers a model (`tools`), how the
//! model may use them (`tool_choice`), the calls it makes (`message.tool_calls`), and the
//! incremental `delta.tool_calls` of a stream, with a gatherer that joins deltas into calls.
//!
//! The legacy `functions` / `function_call` fields are read into the same types; a request that
//! used them gets its reply in the legacy shape (`message.function_call`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;

/// OpenAI's limit on the functions one request may offer.
pub const MAX_TOOLS: usize = 128;
/// OpenAI's limit on a function name.
pub const MAX_FUNCTION_NAME_BYTES: usize = 64;
/// Most calls one reply may make; a provider's delta with a higher index is a fault.
pub const MAX_TOOL_CALLS: usize = 128;

/// One function offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl Tool {
    pub fn function(definition: FunctionDefinition) -> Self {
        Self {
            kind: "function".into(),
            function: definition,
        }
    }
}

/// How the model may use the tools.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// Never call a tool: answer in text.
    None,
    /// Answer in text or call tools, as the model chooses.
    #[default]
    Auto,
    /// Call at least one tool.
    Required,
    /// Call this function.
    Function(String),
}

impl ToolChoice {
    /// The OpenAI value: a string or `{"type":"function","function":{"name":…}}`.
    pub fn to_openai(&self) -> Value {
        match self {
            Self::None => Value::from("none"),
            Self::Auto => Value::from("auto"),
            Self::Required => Value::from("required"),
            Self::Function(name) => {
                serde_json::json!({ "type": "function", "function": { "name": name } })
            }
        }
    }

    /// Reads `tool_choice` (or, with `legacy`, `function_call`, whose named form is
    /// `{"name":…}`). Errors name `param`.
    pub fn from_openai(value: &Value, param: &str) -> Result<Self, ApiError> {
        match value {
            Value::String(text) => match text.as_str() {
                "none" => Ok(Self::None),
                "auto" => Ok(Self::Auto),
                "required" | "any" => Ok(Self::Required),
                other => Err(ApiError::invalid(
                    param,
                    format!("{param} must be none, auto, required or a function, got {other:?}"),
                )),
            },
            Value::Object(object) => {
                let name = object
                    .get("function")
                    .and_then(|function| function.get("name"))
                    .or_else(|| object.get("name"))
                    .and_then(Value::as_str);
                match name {
                    Some(name) => Ok(Self::Function(name.to_owned())),
                    None => Err(ApiError::invalid(
                        param,
                        format!(
                            "{param} names a function as {{\"type\":\"function\",\"function\":{{\"name\":…}}}}"
                        ),
                    )),
                }
            }
            _ => Err(ApiError::invalid(
                param,
                format!("{param} must be a string or an object"),
            )),
        }
    }
}

impl Serialize for ToolChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_openai().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_openai(&value, "tool_choice")
            .map_err(|error| serde::de::Error::custom(error.message))
    }
}

/// One call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments object as JSON text, as OpenAI sends it.
    #[serde(default)]
    pub arguments: String,
}

/// A piece of a call in a stream: the first piece of a call carries its `id` and name, later
/// ones more of its arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ToolCallDelta {
    /// A whole call as one delta, the way a provider that knows the call at once sends it.
    pub fn whole(index: u32, call: &ToolCall) -> Self {
        Self {
            index,
            id: Some(call.id.clone()),
            kind: Some("function".into()),
            function: Some(FunctionCallDelta {
                name: Some(call.function.name.clone()),
                arguments: Some(call.function.arguments.clone()),
            }),
        }
    }

    /// Bytes of the call this delta carries: what a stream's bounds count.
    pub fn len(&self) -> usize {
        self.function.as_ref().map_or(0, |function| {
            function.name.as_ref().map_or(0, String::len)
                + function.arguments.as_ref().map_or(0, String::len)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.id.is_none()
    }
}

/// Joins the deltas of a stream into whole calls, in index order.
#[derive(Debug, Clone, Default)]
pub struct ToolCallGatherer {
    calls: Vec<ToolCall>,
}

/// A delta the gatherer cannot place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tool call delta has index {0}; a reply makes at most {MAX_TOOL_CALLS} calls")]
pub struct TooManyToolCalls(pub u32);

impl ToolCallGatherer {
    pub fn push(&mut self, delta: &ToolCallDelta) -> Result<(), TooManyToolCalls> {
        let index = usize::try_from(delta.index).unwrap_or(usize::MAX);
        if index >= MAX_TOOL_CALLS {
            return Err(TooManyToolCalls(delta.index));
        }
        while self.calls.len() <= index {
            self.calls.push(ToolCall {
                id: String::new(),
                kind: function_kind(),
                function: FunctionCall {
                    name: String::new(),
                    arguments: String::new(),
                },
            });
        }
        let call = &mut self.calls[index];
        if let Some(id) = &delta.id {
            call.id.clone_from(id);
        }
        if let Some(function) = &delta.function {
            if let Some(name) = &function.name {
                call.function.name.push_str(name);
            }
            if let Some(arguments) = &function.arguments {
                call.function.arguments.push_str(arguments);
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls gathered, those with a name only (an index skipped by the provider is dropped).
    pub fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .filter(|call| !call.function.name.is_empty())
            .collect()
    }
}

/// Checks a function name as OpenAI does: 1 to 64 of `a-z A-Z 0-9 _ -`.
pub fn check_function_name(name: &str, param: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_FUNCTION_NAME_BYTES
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            format!(
                "{param} must be 1 to {MAX_FUNCTION_NAME_BYTES} letters, digits, underscores or dashes"
            ),
        ))
    }
}

/// Reads and checks `tools` (or legacy `functions`, a list of bare definitions).
pub fn parse_tools(value: Value, legacy: bool) -> Result<Vec<Tool>, ApiError> {
    let param = if legacy { "functions" } else { "tools" };
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(ApiError::invalid(param, format!("{param} must be a list"))),
    };
    if items.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            param,
            format!(
                "at most {MAX_TOOLS} {param} are allowed, got {}",
                items.len()
            ),
        ));
    }
    let mut tools = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let item_param = format!("{param}[{index}]");
        let tool = if legacy {
            serde_json::from_value::<FunctionDefinition>(item).map(Tool::function)
        } else {
            serde_json::from_value::<Tool>(item)
        }
        .map_err(|error| ApiError::invalid(item_param.clone(), format!("{item_param}: {error}")))?;
        if tool.kind != "function" {
            return Err(ApiError::invalid(
                format!("{item_param}.type"),
                format!(
                    "{item_param}.type must be \"function\", got {:?}",
                    tool.kind
                ),
            ));
        }
        let name_param = if legacy {
            format!("{item_param}.name")
        } else {
            format!("{item_param}.function.name")
        };
        check_function_name(&tool.function.name, &name_param)?;
        if tools
            .iter()
            .any(|known: &Tool| known.function.name == tool.function.name)
        {
            return Err(ApiError::invalid(
                name_param,
                format!("two functions are named {:?}", tool.function.name),
            ));
        }
        if let Some(parameters) = &tool.function.parameters
            && !parameters.is_object()
        {
            return Err(ApiError::invalid(
                format!("{item_param}.function.parameters"),
                "parameters must be a JSON Schema object",
            ));
        }
        tools.push(tool);
    }
    Ok(tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_choice_reads_every_openai_form_and_writes_it_back() {
        for (value, choice) in [
            (serde_json::json!("none"), ToolChoice::None),
            (serde_json::json!("auto"), ToolChoice::Auto),
            (serde_json::json!("required"), ToolChoice::Required),
            (
                serde_json::json!({"type": "function", "function": {"name": "f"}}),
                ToolChoice::Function("f".into()),
            ),
        ] {
            let read = ToolChoice::from_openai(&value, "tool_choice").expect("valid");
            assert_eq!(read, choice);
            assert_eq!(read.to_openai(), value);
        }
        // The legacy function_call names a function without the wrapper.
        assert_eq!(
            ToolChoice::from_openai(&serde_json::json!({"name": "g"}), "function_call")
                .expect("valid"),
            ToolChoice::Function("g".into())
        );
        let error = ToolChoice::from_openai(&serde_json::json!("sometimes"), "tool_choice")
            .expect_err("unknown");
        assert_eq!(error.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn deltas_gather_into_calls_in_index_order() {
        let mut gatherer = ToolCallGatherer::default();
        let pieces = [
            ToolCallDelta {
                index: 1,
                id: Some("call_b".into()),
                kind: Some("function".into()),
                function: Some(FunctionCallDelta {
                    name: Some("second".into()),
                    arguments: Some(String::new()),
                }),
            },
            ToolCallDelta {
                index: 0,
                id: Some("call_a".into()),
                kind: Some("function".into()),
                function: Some(FunctionCallDelta {
                    name: Some("first".into()),
                    arguments: Some("{\"a\":".into()),
                }),
            },
            ToolCallDelta {
                index: 0,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some("1}".into()),
                }),
                ..ToolCallDelta::default()
            },
            ToolCallDelta {
                index: 1,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some("{}".into()),
                }),
                ..ToolCallDelta::default()
            },
        ];
        for piece in &pieces {
            gatherer.push(piece).expect("in range");
        }
        let calls = gatherer.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].function.arguments, "{\"a\":1}");
        assert_eq!(calls[1].function.name, "second");
        assert_eq!(calls[1].function.arguments, "{}");
    }

    #[test]
    fn a_delta_index_beyond_the_bound_is_refused_without_allocating() {
        let mut gatherer = ToolCallGatherer::default();
        let error = gatherer
            .push(&ToolCallDelta {
                index: u32::MAX,
                ..ToolCallDelta::default()
            })
            .expect_err("out of range");
        assert_eq!(error, TooManyToolCalls(u32::MAX));
        assert!(gatherer.is_empty());
    }

    #[test]
    fn tools_are_checked_and_name_the_field() {
        let valid = parse_tools(
            serde_json::json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]),
            false,
        )
        .expect("valid");
        assert_eq!(valid[0].function.name, "get_weather");
        let legacy = parse_tools(serde_json::json!([{"name": "f"}]), true).expect("valid");
        assert_eq!(legacy[0].kind, "function");
        let cases = [
            (serde_json::json!({"a": 1}), "tools"),
            (
                serde_json::json!([{"type": "retrieval", "function": {"name": "f"}}]),
                "tools[0].type",
            ),
            (
                serde_json::json!([{"type": "function", "function": {"name": "has space"}}]),
                "tools[0].function.name",
            ),
            (
                serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
                "tools[0].function.parameters",
            ),
            (
                serde_json::json!([
                    {"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "f"}}
                ]),
                "tools[1].function.name",
            ),
            (serde_json::json!([{"type": "function"}]), "tools[0]"),
        ];
        for (value, param) in cases {
            let error = parse_tools(value.clone(), false).expect_err("invalid");
            assert_eq!(error.param.as_deref(), Some(param), "{value}");
        }
        let too_many: Vec<Value> = (0..=MAX_TOOLS)
            .map(|index| serde_json::json!({"type": "function", "function": {"name": format!("f{index}")}}))
            .collect();
        assert!(parse_tools(Value::from(too_many), false).is_err());
    }
}
