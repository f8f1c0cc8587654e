//! Rendering a conversation into the prompt text the model was trained on, from the chat
//! template stored in the GGUF file itself (`tokenizer.chat_template`), so that every model gets
//! its own format, default system prompt included.

use minijinja::{Environment, ErrorKind, context};
use serde::Serialize;
use serde_json::Value;

/// Used when a GGUF carries no template of its own: ChatML, the most common instruction format.
const FALLBACK_CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A template is code from a file: bound the work one rendering may do so that a hostile or
/// broken template cannot spin forever. Real templates use a few thousand units per message.
const TEMPLATE_FUEL_PER_RENDER: u64 = 5_000_000;

/// A call an assistant message made (in the conversation so far, or parsed from a reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallMessage {
    pub id: String,
    pub name: String,
    /// The arguments object as JSON text.
    pub arguments: String,
}

/// Arguments text as a JSON value for templates; text that is not JSON stays a string.
fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::from(arguments))
}

/// A call as templates expect it (`arguments` an object, so that `| tojson` prints it once).
#[derive(Debug, Serialize)]
struct TemplateToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: TemplateFunction,
}

#[derive(Debug, Serialize)]
struct TemplateFunction {
    name: String,
    arguments: Value,
}

/// One message of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The calls an assistant message made.
    pub tool_calls: Vec<ToolCallMessage>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
    /// The function a tool message answers.
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message of text alone.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A message as templates read it: OpenAI's shape, with each call's arguments as an object.
#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<TemplateToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for TemplateMessage<'a> {
    fn from(message: &'a ChatMessage) -> Self {
        Self {
            role: &message.role,
            content: &message.content,
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| TemplateToolCall {
                    id: call.id.clone(),
                    kind: "function",
                    function: TemplateFunction {
                        name: call.name.clone(),
                        arguments: arguments_value(&call.arguments),
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
            name: message.name.as_deref(),
        }
    }
}

/// A compiled chat template.
pub(crate) struct ChatTemplate {
    environment: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the model's chat template failed: {0}")]
pub struct TemplateError(String);

impl ChatTemplate {
    pub(crate) fn new(
        source: Option<String>,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, TemplateError> {
        let mut environment = Environment::new();
        environment.set_fuel(Some(TEMPLATE_FUEL_PER_RENDER));
        // Templates written for Python's Jinja call string and dict methods (`.strip()`,
        // `.items()`); pycompat provides them.
        environment
            .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.add_function("raise_exception", raise_exception);
        let source = source.unwrap_or_else(|| FALLBACK_CHATML_TEMPLATE.to_owned());
        environment
            .add_template_owned("chat", source)
            .map_err(|error| TemplateError(error.to_string()))?;
        Ok(Self {
            environment,
            bos_token,
            eos_token,
        })
    }

    pub(crate) fn render(
        &self,
        messages: &[ChatMessage],
        enable_thinking: bool,
        tools: Option<&[Value]>,
    ) -> Result<String, TemplateError> {
        let template = self
            .environment
            .get_template("chat")
            .map_err(|error| TemplateError(error.to_string()))?;
        let messages: Vec<TemplateMessage<'_>> = messages.iter().map(Into::into).collect();
        template
            .render(context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                enable_thinking => enable_thinking,
            })
            .map_err(|error| TemplateError(error.to_string()))
    }
}

fn raise_exception(message: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
    }

    #[test]
    fn renders_the_models_own_default_system_prompt_when_none_is_given() {
        let template =
            ChatTemplate::new(Some(SMOLLM2_TEMPLATE.into()), String::new(), String::new())
                .expect("template compiles");
        let prompt = template
            .render(&[message("user", "hi")], true, None)
            .expect("renders");
        assert!(
            prompt.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        );
        assert!(prompt.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn a_given_system_prompt_replaces_the_default() {
        let template =
            ChatTemplate::new(Some(SMOLLM2_TEMPLATE.into()), String::new(), String::new())
                .expect("template compiles");
        let prompt = template
            .render(
                &[message("system", "Be brief."), message("user", "hi")],
                true,
                None,
            )
            .expect("renders");
        assert!(prompt.starts_with("<|im_start|>system\nBe brief.<|im_end|>"));
        assert!(!prompt.contains("SmolLM"));
    }

    /// The tool-calling part of Qwen 2.5's template (tools in the system message, calls in
    /// `<tool_call>` tags with `arguments | tojson`, results in `<tool_response>` tags).
    const QWEN25_TOOLS_TEMPLATE: &str = r#"{%- if tools %}{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen.' }}{%- endif %}{{- "\n\n# Tools\n<tools>" }}{%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}{{- "\n</tools><|im_end|>\n" }}{%- endif %}{%- for message in messages %}{%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- elif message.role == "assistant" %}{{- '<|im_start|>' + message.role }}{%- if message.content %}{{- '\n' + message.content }}{%- endif %}{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}{{- '\n<tool_call>\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}{{- tool_call.arguments | tojson }}{{- '}\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\n' }}{%- elif message.role == "tool" %}{{- '<|im_start|>user\n<tool_response>\n' }}{{- message.content }}{{- '\n</tool_response><|im_end|>\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"#;

    #[test]
    fn tools_calls_and_results_reach_a_template_that_renders_them() {
        let template = ChatTemplate::new(
            Some(QWEN25_TOOLS_TEMPLATE.into()),
            String::new(),
            String::new(),
        )
        .expect("template compiles");
        let tools = vec![
            serde_json::json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}),
        ];
        let messages = [
            message("user", "Weather in Paris?"),
            ChatMessage {
                tool_calls: vec![ToolCallMessage {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }],
                ..message("assistant", "")
            },
            ChatMessage {
                tool_call_id: Some("call_1".into()),
                ..message("tool", "18 C")
            },
        ];
        let prompt = template
            .render(&messages, true, Some(&tools))
            .expect("renders");
        assert!(
            prompt.contains(
                r#"<tools>
{"type":"function","function":{"name":"get_weather""#
            ),
            "{prompt}"
        );
        // The arguments are an object to the template: printed once, not as a quoted string.
        assert!(
            prompt.contains(r#"{"name": "get_weather", "arguments": {"city":"Paris"}}"#),
            "{prompt}"
        );
        assert!(prompt.contains("<tool_response>\n18 C\n</tool_response>"));
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
        // Without tools the template's tool section is left out.
        let plain = template
            .render(&messages[..1], true, None)
            .expect("renders");
        assert!(!plain.contains("<tools>"));
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let source = "{% if messages[0].role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}{{ messages[0].content.strip() }}";
        let template =
            ChatTemplate::new(Some(source.into()), String::new(), String::new()).expect("compiles");
        assert_eq!(
            template
                .render(&[message("user", "  x  ")], true, None)
                .expect("renders"),
            "x"
        );
        let error = template
            .render(&[message("tool", "x")], true, None)
            .expect_err("raises");
        assert!(error.to_string().contains("no tools"));
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let source =
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let template =
            ChatTemplate::new(Some(source.into()), String::new(), String::new()).expect("compiles");
        assert!(
            template
                .render(&[message("user", "x")], true, None)
                .is_err()
        );
    }
}
