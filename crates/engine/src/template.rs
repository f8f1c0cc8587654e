//! Rendering a conversation into the prompt text the model was trained on, from the chat
//! template stored in the GGUF file itself (`tokenizer.chat_template`), so that every model gets
//! its own format, default system prompt included.

use minijinja::{Environment, ErrorKind, context};
use serde::Serialize;

/// Used when a GGUF carries no template of its own: ChatML, the most common instruction format.
const FALLBACK_CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A template is code from a file: bound the work one rendering may do so that a hostile or
/// broken template cannot spin forever. Real templates use a few thousand units per message.
const TEMPLATE_FUEL_PER_RENDER: u64 = 5_000_000;

/// One message as the template sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
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
    ) -> Result<String, TemplateError> {
        let template = self
            .environment
            .get_template("chat")
            .map_err(|error| TemplateError(error.to_string()))?;
        template
            .render(context! {
                messages => messages,
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
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_the_models_own_default_system_prompt_when_none_is_given() {
        let template =
            ChatTemplate::new(Some(SMOLLM2_TEMPLATE.into()), String::new(), String::new())
                .expect("template compiles");
        let prompt = template
            .render(&[message("user", "hi")], true)
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
            )
            .expect("renders");
        assert!(prompt.starts_with("<|im_start|>system\nBe brief.<|im_end|>"));
        assert!(!prompt.contains("SmolLM"));
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let source = "{% if messages[0].role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}{{ messages[0].content.strip() }}";
        let template =
            ChatTemplate::new(Some(source.into()), String::new(), String::new()).expect("compiles");
        assert_eq!(
            template
                .render(&[message("user", "  x  ")], true)
                .expect("renders"),
            "x"
        );
        let error = template
            .render(&[message("tool", "x")], true)
            .expect_err("raises");
        assert!(error.to_string().contains("no tools"));
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let source =
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let template =
            ChatTemplate::new(Some(source.into()), String::new(), String::new()).expect("compiles");
        assert!(template.render(&[message("user", "x")], true).is_err());
    }
}
