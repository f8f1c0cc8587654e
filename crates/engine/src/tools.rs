//! Tool calling on the embedded engine: how tools reach the prompt, which grammar holds the
//! model to a valid call, and how the calls are read back out of the generated text.
//!
//! Two formats, chosen from the model's own chat template:
//! - [`ToolFormat::Hermes`], for templates that render tools themselves and expect calls as
//!   `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Qwen 2.5 and 3, Hermes, SmolLM3
//!   and their fine-tunes): the template gets the `tools` variable and messages with their
//!   `tool_calls`, and the output is free text until the model opens a call; from there a
//!   grammar (lazy, triggered by `<tool_call>`, under `auto`) holds it to a call whose
//!   arguments match the function's schema.
//! - [`ToolFormat::Generic`], for every other template: the tools are described in the system
//!   message, tool results come back as user messages, and the whole reply is one JSON object
//!   — `{"tool_calls": [{"name": …, "arguments": {…}}]}`, or under `auto`
//!   `{"response": "…"}` — held to that shape by a grammar, so that even a small model that was
//!   never trained on tools emits a call whose arguments validate against the schema.
//!
//! The grammars come from llama.cpp's own JSON-Schema-to-grammar converter.

use serde_json::{Value, json};

use crate::template::{ChatMessage, ToolCallMessage};
use crate::text::longest_suffix_prefix;

/// How a model's template speaks of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Generic,
}

impl ToolFormat {
    /// The format a chat template expects.
    pub(crate) fn of_template(source: Option<&str>) -> Self {
        match source {
            Some(source) if source.contains("<tool_call>") && source.contains("tools") => {
                Self::Hermes
            }
            _ => Self::Generic,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Generic => "generic",
        }
    }
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object; `None` for any object.
    pub parameters: Option<Value>,
}

/// Whether and which tools the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// Text or calls, as the model chooses.
    Auto,
    /// At least one call.
    Required,
    /// A call of this function.
    Named(String),
}

/// The tools of one request. A request whose client chose `none` carries no `ToolUse`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    pub tools: Vec<ToolSpec>,
    pub mode: ToolMode,
    /// More than one call in a reply.
    pub parallel: bool,
}

/// How the output is held to tool calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolGrammar {
    pub(crate) grammar: String,
    /// Text that switches the grammar on; empty when it holds from the first token.
    pub(crate) triggers: Vec<String>,
}

/// What a reply turned out to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedReply {
    /// Text not yet handed out by [`ReplyParser::push`].
    pub content: String,
    pub calls: Vec<ToolCallMessage>,
}

impl ToolUse {
    /// The functions as the OpenAI `tools` list, for templates and the generic system prompt.
    fn openai_tools(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|tool| {
                let mut function = serde_json::Map::new();
                function.insert("name".into(), Value::from(tool.name.clone()));
                if let Some(description) = &tool.description {
                    function.insert("description".into(), Value::from(description.clone()));
                }
                function.insert(
                    "parameters".into(),
                    tool.parameters.clone().unwrap_or_else(any_object),
                );
                json!({ "type": "function", "function": function })
            })
            .collect()
    }

    /// The functions that may be called under this mode.
    fn callable(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().filter(move |tool| match &self.mode {
            ToolMode::Named(name) => &tool.name == name,
            ToolMode::Auto | ToolMode::Required => true,
        })
    }

    /// JSON Schema of one call: `{"name": <one of the functions>, "arguments": <its schema>}`.
    fn call_schema(&self) -> Value {
        let calls: Vec<Value> = self
            .callable()
            .map(|tool| {
                let mut properties = serde_json::Map::new();
                properties.insert("name".into(), json!({ "const": tool.name }));
                properties.insert(
                    "arguments".into(),
                    tool.parameters.clone().unwrap_or_else(any_object),
                );
                json!({
                    "type": "object",
                    "properties": properties,
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        if calls.len() == 1 {
            calls.into_iter().next().unwrap_or_else(any_object)
        } else {
            json!({ "anyOf": calls })
        }
    }

    /// The grammar for `format`, built by llama.cpp's converter.
    pub(crate) fn grammar(
        &self,
        format: ToolFormat,
        to_grammar: impl Fn(&str) -> Result<String, String>,
    ) -> Result<ToolGrammar, String> {
        match format {
            ToolFormat::Generic => {
                let mut calls = json!({
                    "type": "array",
                    "items": self.call_schema(),
                    "minItems": 1,
                });
                if !self.parallel {
                    calls["maxItems"] = Value::from(1);
                }
                let mut properties = serde_json::Map::new();
                properties.insert("tool_calls".into(), calls);
                let call_reply = json!({
                    "type": "object",
                    "properties": properties,
                    "required": ["tool_calls"],
                    "additionalProperties": false,
                });
                let schema = match self.mode {
                    ToolMode::Auto => json!({ "anyOf": [call_reply, {
                        "type": "object",
                        "properties": { "response": { "type": "string" } },
                        "required": ["response"],
                        "additionalProperties": false,
                    }]}),
                    ToolMode::Required | ToolMode::Named(_) => call_reply,
                };
                Ok(ToolGrammar {
                    grammar: to_grammar(&schema.to_string())?,
                    triggers: Vec::new(),
                })
            }
            ToolFormat::Hermes => {
                let call = to_grammar(&self.call_schema().to_string())?;
                let call = rename_root(&call, "tool-call-json");
                let one = format!(r#""{HERMES_OPEN}\n" tool-call-json "\n{HERMES_CLOSE}""#);
                let root = if self.parallel {
                    format!("root ::= {one} (\"\\n\" {one})*\n")
                } else {
                    format!("root ::= {one}\n")
                };
                let triggers = match self.mode {
                    ToolMode::Auto => vec![HERMES_OPEN.to_owned()],
                    ToolMode::Required | ToolMode::Named(_) => Vec::new(),
                };
                Ok(ToolGrammar {
                    grammar: format!("{root}{call}"),
                    triggers,
                })
            }
        }
    }

    /// The messages as the template gets them under `format` (the generic format describes the
    /// tools in the system message and turns calls and results into text).
    pub(crate) fn prepare(&self, format: ToolFormat, messages: &[ChatMessage]) -> Vec<ChatMessage> {
        match format {
            ToolFormat::Hermes => messages.to_vec(),
            ToolFormat::Generic => {
                let tools = serde_json::to_string_pretty(&self.openai_tools()).unwrap_or_default();
                let instruction = match self.mode {
                    ToolMode::Auto => {
                        "Respond in JSON format, either with `tool_calls` (a request to call tools) or with `response` (a reply to the user's request). Once a tool has returned what the user asked for, reply with `response`; never call a tool again with the same arguments."
                    }
                    ToolMode::Required | ToolMode::Named(_) => {
                        "Respond in JSON format with `tool_calls` (a request to call tools)."
                    }
                };
                let preamble = format!(
                    "You can call any of the following tools to satisfy the user's requests: {tools}\n\nExample tool call syntax:\n\n{{\"tool_calls\": [{{\"name\": \"tool_name\", \"arguments\": {{\"arg1\": \"some_value\"}}}}]}}\n\n{instruction}"
                );
                let mut prepared = generic_messages(messages);
                match prepared.first_mut() {
                    Some(first) if first.role == "system" => {
                        first.content = format!("{}\n\n{preamble}", first.content);
                    }
                    _ => prepared.insert(0, ChatMessage::text("system", preamble)),
                }
                prepared
            }
        }
    }

    /// The `tools` variable of a template that renders tools itself.
    pub(crate) fn template_tools(&self, format: ToolFormat) -> Option<Vec<Value>> {
        (format == ToolFormat::Hermes).then(|| self.openai_tools())
    }
}

/// The conversation for a template that knows nothing of tools, in a request without tools:
/// earlier calls and results as text all the same (many templates refuse a `tool` role).
pub(crate) fn generic_history(format: ToolFormat, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let has_tools = messages
        .iter()
        .any(|message| message.role == "tool" || !message.tool_calls.is_empty());
    if format == ToolFormat::Generic && has_tools {
        generic_messages(&messages)
    } else {
        messages
    }
}

/// A conversation in the generic format: each call an assistant made is told in its turn
/// (`I called get_weather({"city":"Paris"}).`), and each result comes back as a user turn
/// naming the function (`get_weather returned: …`), since the template knows nothing of them.
/// Messages without tools pass unchanged.
fn generic_messages(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut names: Vec<(&str, &str)> = Vec::new();
    let mut prepared = Vec::with_capacity(messages.len());
    for message in messages {
        if message.role == "tool" {
            let name = message.name.as_deref().or_else(|| {
                let id = message.tool_call_id.as_deref()?;
                names
                    .iter()
                    .find(|(known, _)| *known == id)
                    .map(|(_, name)| *name)
            });
            let text = match name {
                Some(name) => format!("{name} returned: {}", message.content),
                None => format!("The tool returned: {}", message.content),
            };
            prepared.push(ChatMessage::text("user", text));
            continue;
        }
        if message.tool_calls.is_empty() {
            prepared.push(message.clone());
            continue;
        }
        let mut text = message.content.clone();
        for call in &message.tool_calls {
            names.push((&call.id, &call.name));
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("I called {}({}).", call.name, call.arguments));
        }
        prepared.push(ChatMessage::text("assistant", text));
    }
    prepared
}

fn any_object() -> Value {
    json!({ "type": "object" })
}

/// Renames a GBNF grammar's `root` rule, so that it can be used inside another grammar.
fn rename_root(grammar: &str, name: &str) -> String {
    grammar
        .lines()
        .map(|line| match line.strip_prefix("root ::=") {
            Some(rest) => format!("{name} ::={rest}\n"),
            None => format!("{line}\n"),
        })
        .collect()
}

/// Reads a reply as it is generated: text goes out as soon as it is surely not part of a call,
/// and each call as soon as it is whole. In the generic format the text of
/// `{"response": "…"}` goes out as it grows, decoded from JSON, and each object of
/// `{"tool_calls": [ … ]}` when it closes; in the Hermes format text goes out until a
/// `<tool_call>` opens, and each call when its `</tool_call>` arrives.
#[derive(Debug)]
pub struct ReplyParser {
    format: ToolFormat,
    /// Generic: the whole reply. Hermes: text that may be the start of a call's opening, or
    /// (once `holding`) what is left from the first call on.
    held: String,
    holding: bool,
    response: ResponseText,
    /// Generic: where the next call of the `tool_calls` list starts, once the list has opened.
    next_call: Option<usize>,
    /// Calls handed out so far.
    calls_out: usize,
}

impl ReplyParser {
    pub fn new(format: ToolFormat) -> Self {
        Self {
            format,
            held: String::new(),
            holding: format == ToolFormat::Generic,
            response: ResponseText::default(),
            next_call: None,
            calls_out: 0,
        }
    }

    /// Takes generated text; returns the text and the whole calls that can go out now.
    pub fn push(&mut self, text: &str) -> ParsedReply {
        self.held.push_str(text);
        let piece = self.read();
        self.calls_out += piece.calls.len();
        piece
    }

    fn read(&mut self) -> ParsedReply {
        match self.format {
            ToolFormat::Generic => ParsedReply {
                content: self.response.advance(&self.held),
                calls: self.generic_calls(),
            },
            ToolFormat::Hermes => {
                let mut piece = ParsedReply::default();
                if !self.holding {
                    if let Some(at) = self.held.find(HERMES_OPEN) {
                        self.holding = true;
                        piece.content = self.held[..at].to_owned();
                        self.held.drain(..at);
                    } else {
                        let keep = longest_suffix_prefix(&self.held, HERMES_OPEN);
                        let release_to = self.held.len() - keep;
                        piece.content = self.held.drain(..release_to).collect();
                    }
                }
                if self.holding {
                    piece.calls = self.hermes_calls();
                }
                piece
            }
        }
    }

    /// The reply's end: what is left of its text, and calls not handed out yet (a reply cut
    /// short by `max_tokens` keeps the calls it completed).
    pub fn finish(mut self) -> ParsedReply {
        match self.format {
            ToolFormat::Generic if self.response.started() => ParsedReply {
                content: self.response.advance(&self.held),
                calls: Vec::new(),
            },
            ToolFormat::Generic if self.next_call.is_some() => {
                let calls = self.generic_calls();
                if calls.is_empty() && self.calls_out == 0 {
                    // Cut before its first call was whole: the text as it stands.
                    return ParsedReply {
                        content: std::mem::take(&mut self.held),
                        calls,
                    };
                }
                ParsedReply {
                    content: String::new(),
                    calls,
                }
            }
            // Neither a response nor calls: the text as it stands.
            ToolFormat::Generic => ParsedReply {
                content: std::mem::take(&mut self.held),
                calls: Vec::new(),
            },
            ToolFormat::Hermes if self.holding => parse_hermes(&std::mem::take(&mut self.held)),
            ToolFormat::Hermes => ParsedReply {
                content: std::mem::take(&mut self.held),
                calls: Vec::new(),
            },
        }
    }

    /// The calls of `{"tool_calls": [ … ` that have closed since the last look.
    fn generic_calls(&mut self) -> Vec<ToolCallMessage> {
        let mut calls = Vec::new();
        if self.next_call.is_none() {
            self.next_call = tool_calls_list_start(&self.held);
        }
        let Some(mut at) = self.next_call else {
            return calls;
        };
        loop {
            let rest = &self.held[at..];
            let trimmed = rest.trim_start();
            let trimmed = trimmed.strip_prefix(',').unwrap_or(trimmed);
            let skipped = rest.len() - trimmed.len();
            let mut values = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
            match values.next() {
                Some(Ok(call @ Value::Object(_))) => {
                    at += skipped + values.byte_offset();
                    calls.extend(call_from_json(call));
                }
                _ => break,
            }
        }
        self.next_call = Some(at);
        calls
    }

    /// The `<tool_call>…</tool_call>` blocks at the front of what is held, once closed.
    fn hermes_calls(&mut self) -> Vec<ToolCallMessage> {
        let mut calls = Vec::new();
        loop {
            let trimmed = self.held.trim_start();
            let Some(body) = trimmed.strip_prefix(HERMES_OPEN) else {
                break;
            };
            let Some(close) = body.find(HERMES_CLOSE) else {
                break;
            };
            let Some(call) = serde_json::from_str::<Value>(body[..close].trim())
                .ok()
                .and_then(call_from_json)
            else {
                // Not a call after all: left for `finish`, which keeps it as text.
                break;
            };
            calls.push(call);
            let consumed = self.held.len() - body.len() + close + HERMES_CLOSE.len();
            self.held.drain(..consumed);
        }
        calls
    }
}

/// Where the first call of `{"tool_calls": [` begins, once that much of the reply is there.
fn tool_calls_list_start(reply: &str) -> Option<usize> {
    let rest = reply
        .trim_start()
        .strip_prefix('{')?
        .trim_start()
        .strip_prefix("\"tool_calls\"")?
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('[')?;
    Some(reply.len() - rest.len())
}

/// The string of a generic reply `{"response": "…"}`, decoded as it grows.
#[derive(Debug, Default)]
struct ResponseText {
    /// Where the string's text starts in the reply, once the reply is known to be a response.
    start: Option<usize>,
    /// How far the text has been decoded and handed out.
    consumed: usize,
    closed: bool,
}

impl ResponseText {
    fn started(&self) -> bool {
        self.start.is_some()
    }

    /// The text decoded since the last call. Stops before an escape that is not whole yet.
    fn advance(&mut self, reply: &str) -> String {
        if self.closed {
            return String::new();
        }
        if self.start.is_none() {
            let Some(start) = response_text_start(reply) else {
                return String::new();
            };
            self.start = Some(start);
            self.consumed = start;
        }
        let bytes = reply.as_bytes();
        let mut at = self.consumed;
        while at < bytes.len() {
            match bytes[at] {
                b'"' => {
                    self.closed = true;
                    break;
                }
                b'\\' => {
                    let length = match bytes.get(at + 1) {
                        None => break,
                        Some(b'u') => {
                            let high_surrogate = reply
                                .get(at + 2..at + 6)
                                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                                .is_some_and(|code| (0xD800..0xDC00).contains(&code));
                            if high_surrogate { 12 } else { 6 }
                        }
                        Some(_) => 2,
                    };
                    if at + length > bytes.len() {
                        break;
                    }
                    at += length;
                }
                _ => at += 1,
            }
        }
        // `at` is at a quote, a backslash or the end: always a character boundary.
        let piece = &reply[self.consumed..at];
        self.consumed = at;
        serde_json::from_str::<String>(&format!("\"{piece}\"")).unwrap_or_else(|_| piece.to_owned())
    }
}

/// Where the text of `{"response": "` begins, once that much of the reply is there.
fn response_text_start(reply: &str) -> Option<usize> {
    let rest = reply
        .trim_start()
        .strip_prefix('{')?
        .trim_start()
        .strip_prefix("\"response\"")?
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(reply.len() - rest.len())
}

/// Text with `<tool_call>{…}</tool_call>` blocks: the blocks become calls, the rest content.
fn parse_hermes(text: &str) -> ParsedReply {
    let mut reply = ParsedReply::default();
    let mut rest = text;
    while let Some(open) = rest.find(HERMES_OPEN) {
        reply.content.push_str(&rest[..open]);
        let after = &rest[open + HERMES_OPEN.len()..];
        let (body, next) = match after.find(HERMES_CLOSE) {
            Some(close) => (&after[..close], &after[close + HERMES_CLOSE.len()..]),
            None => (after, ""),
        };
        match serde_json::from_str::<Value>(body.trim())
            .ok()
            .and_then(call_from_json)
        {
            Some(call) => reply.calls.push(call),
            None => {
                reply.content.push_str(HERMES_OPEN);
                reply.content.push_str(body);
            }
        }
        rest = next;
    }
    reply.content.push_str(rest);
    if !reply.calls.is_empty() {
        reply.content = reply.content.trim().to_owned();
    }
    reply
}

fn call_from_json(call: Value) -> Option<ToolCallMessage> {
    let name = call.get("name")?.as_str()?.to_owned();
    let arguments = match call.get("arguments").or_else(|| call.get("parameters")) {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(value) => value.to_string(),
    };
    Some(ToolCallMessage {
        id: String::new(),
        name,
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> ToolUse {
        ToolUse {
            tools: vec![
                ToolSpec {
                    name: "get_weather".into(),
                    description: Some("Weather in a city".into()),
                    parameters: Some(json!({
                        "type": "object",
                        "properties": { "city": { "type": "string" } },
                        "required": ["city"],
                    })),
                },
                ToolSpec {
                    name: "get_time".into(),
                    description: None,
                    parameters: None,
                },
            ],
            mode: ToolMode::Auto,
            parallel: false,
        }
    }

    fn to_grammar(schema: &str) -> Result<String, String> {
        llama_cpp_2::json_schema_to_grammar(schema).map_err(|error| error.to_string())
    }

    #[test]
    fn the_template_decides_the_format() {
        assert_eq!(ToolFormat::of_template(None), ToolFormat::Generic);
        assert_eq!(
            ToolFormat::of_template(Some("{{ messages }}")),
            ToolFormat::Generic
        );
        assert_eq!(
            ToolFormat::of_template(Some(
                "{% if tools %}{% for tool in tools %}{{ tool | tojson }}{% endfor %}{% endif %}<tool_call>"
            )),
            ToolFormat::Hermes
        );
    }

    #[test]
    fn generic_messages_carry_the_tools_calls_and_results_as_text() {
        let messages = vec![
            ChatMessage::text("user", "Weather in Paris?"),
            ChatMessage {
                tool_calls: vec![ToolCallMessage {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }],
                ..ChatMessage::text("assistant", "")
            },
            ChatMessage {
                tool_call_id: Some("call_1".into()),
                ..ChatMessage::text("tool", "18 C")
            },
        ];
        let prepared = weather().prepare(ToolFormat::Generic, &messages);
        assert_eq!(prepared[0].role, "system");
        assert!(prepared[0].content.contains("\"get_weather\""));
        assert!(prepared[0].content.contains("`response`"));
        assert_eq!(prepared[2].role, "assistant");
        assert_eq!(
            prepared[2].content,
            r#"I called get_weather({"city":"Paris"})."#
        );
        assert_eq!(prepared[3].role, "user");
        assert_eq!(prepared[3].content, "get_weather returned: 18 C");
        // A given system message keeps its text and gains the tools.
        let with_system = weather().prepare(
            ToolFormat::Generic,
            &[
                ChatMessage::text("system", "Be brief."),
                messages[0].clone(),
            ],
        );
        assert_eq!(with_system.len(), 2);
        assert!(with_system[0].content.starts_with("Be brief.\n\n"));
    }

    #[test]
    fn generic_grammars_compile_for_every_mode() {
        for mode in [
            ToolMode::Auto,
            ToolMode::Required,
            ToolMode::Named("get_time".into()),
        ] {
            for parallel in [false, true] {
                let tools = ToolUse {
                    mode: mode.clone(),
                    parallel,
                    ..weather()
                };
                let grammar = tools
                    .grammar(ToolFormat::Generic, to_grammar)
                    .expect("converts");
                assert!(grammar.triggers.is_empty());
                assert!(grammar.grammar.contains("root ::="));
                assert_eq!(
                    grammar.grammar.contains("response"),
                    mode == ToolMode::Auto,
                    "{mode:?}"
                );
                assert_eq!(
                    grammar.grammar.contains("get_weather"),
                    mode != ToolMode::Named("get_time".into()),
                    "{mode:?}"
                );
            }
        }
    }

    #[test]
    fn hermes_grammar_wraps_the_call_and_is_lazy_under_auto() {
        let grammar = weather()
            .grammar(ToolFormat::Hermes, to_grammar)
            .expect("converts");
        assert!(
            grammar
                .grammar
                .starts_with("root ::= \"<tool_call>\\n\" tool-call-json")
        );
        assert_eq!(grammar.grammar.matches("root ::=").count(), 1);
        assert!(grammar.grammar.contains("tool-call-json ::="));
        assert_eq!(grammar.triggers, vec!["<tool_call>".to_owned()]);
        let required = ToolUse {
            mode: ToolMode::Required,
            ..weather()
        }
        .grammar(ToolFormat::Hermes, to_grammar)
        .expect("converts");
        assert!(required.triggers.is_empty());
    }

    /// Feeds `pieces`; returns what each push handed out, then what `finish` did.
    fn run(format: ToolFormat, pieces: &[&str]) -> (Vec<ParsedReply>, ParsedReply) {
        let mut parser = ReplyParser::new(format);
        let pushed = pieces.iter().map(|piece| parser.push(piece)).collect();
        (pushed, parser.finish())
    }

    fn names(calls: &[ToolCallMessage]) -> Vec<&str> {
        calls.iter().map(|call| call.name.as_str()).collect()
    }

    fn contents(pushed: &[ParsedReply]) -> Vec<&str> {
        pushed.iter().map(|piece| piece.content.as_str()).collect()
    }

    #[test]
    fn generic_calls_go_out_each_as_it_closes() {
        let (pushed, end) = run(
            ToolFormat::Generic,
            &[
                r#"{"tool_calls": [{"name": "get_weather", "#,
                r#""arguments": {"city": "Paris"}}, {"name": "#,
                r#""get_time", "arguments": {"zone": "CET"}}"#,
                "]}",
            ],
        );
        assert!(pushed[0].calls.is_empty());
        assert_eq!(names(&pushed[1].calls), vec!["get_weather"]);
        let arguments: Value = serde_json::from_str(&pushed[1].calls[0].arguments).expect("json");
        assert_eq!(arguments, json!({"city": "Paris"}));
        assert_eq!(names(&pushed[2].calls), vec!["get_time"]);
        assert!(pushed[3].calls.is_empty());
        assert_eq!(end, ParsedReply::default());
        assert!(contents(&pushed).iter().all(|text| text.is_empty()));
    }

    #[test]
    fn a_generic_response_streams_as_it_grows() {
        // Decoded from JSON, escapes split across pieces included.
        let (pushed, end) = run(
            ToolFormat::Generic,
            &[
                r#"{"resp"#,
                r#"onse": "It is"#,
                r#" sunny\"#,
                r#"n\u00e9t\ud83d"#,
                r#"\ude00 ok."}"#,
            ],
        );
        assert_eq!(
            contents(&pushed),
            vec!["", "It is", " sunny", "\nét", "😀 ok."]
        );
        assert_eq!(end, ParsedReply::default());
    }

    #[test]
    fn a_generic_reply_cut_short_keeps_what_was_whole() {
        // A response cut by max_tokens has already gone out.
        let (pushed, end) = run(ToolFormat::Generic, &[r#"{"response": "It is"#]);
        assert_eq!(contents(&pushed), vec!["It is"]);
        assert_eq!(end, ParsedReply::default());
        // Calls completed before the cut go out; the one cut is dropped.
        let (pushed, end) = run(
            ToolFormat::Generic,
            &[
                r#"{"tool_calls": [{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_ti"#,
            ],
        );
        assert_eq!(names(&pushed[0].calls), vec!["get_time", "get_weather"]);
        assert_eq!(end, ParsedReply::default());
        // Nothing whole: the text as it stands.
        let cut = r#"{"tool_calls": [{"name": "get_ti"#;
        let (_, end) = run(ToolFormat::Generic, &[cut]);
        assert_eq!(end.content, cut);
        assert!(end.calls.is_empty());
        let (_, end) = run(ToolFormat::Generic, &[r#"{"tool_"#]);
        assert_eq!(end.content, r#"{"tool_"#);
    }

    #[test]
    fn hermes_text_streams_until_a_call_opens_and_each_call_goes_out_when_closed() {
        let (pushed, end) = run(
            ToolFormat::Hermes,
            &[
                "Let me check. <tool",
                "_call>\n{\"name\": \"get_time\", ",
                "\"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
                "\n</tool_call>",
            ],
        );
        assert_eq!(contents(&pushed), vec!["Let me check. ", "", "", ""]);
        assert_eq!(names(&pushed[2].calls), vec!["get_time"]);
        assert_eq!(pushed[2].calls[0].arguments, "{}");
        assert_eq!(names(&pushed[3].calls), vec!["get_weather"]);
        assert_eq!(end, ParsedReply::default());

        // A false start of an opening goes out as text.
        let (pushed, end) = run(ToolFormat::Hermes, &["No tools needed <", "3"]);
        assert_eq!(contents(&pushed), vec!["No tools needed ", "<3"]);
        assert_eq!(end, ParsedReply::default());

        // A block that is not a call is kept as text; a call cut short is read if it can be.
        let (pushed, end) = run(ToolFormat::Hermes, &["<tool_call>\nnot json</tool_call>"]);
        assert!(pushed[0].calls.is_empty());
        assert_eq!(end.content, "<tool_call>\nnot json");
        let (_, end) = run(
            ToolFormat::Hermes,
            &["<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}"],
        );
        assert_eq!(names(&end.calls), vec!["get_time"]);
    }
}
