//! Chat templates: the Jinja template a model ships (GGUF's `tokenizer.chat_template`, or
//! `chat_template` in tokenizer_config.json) turns a conversation into the exact text the model
//! was fine-tuned on, rendered with minijinja as Hugging Face's `apply_chat_template` does.

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// An assistant turn's tool calls, in OpenAI's shape (`[{"id", "type", "function": {"name",
    /// "arguments"}}]`), for templates that render them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A tool result's call id (`role: "tool"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// Instructions a template may run per render: real templates take a few dozen per message
/// (SmolLM2's ChatML: ~40), so this is ample for conversations of thousands of turns.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Bytes a rendered conversation may take. A prompt must fit the context window (at most a few
/// MiB of text for any model people run), so a template that writes more is looping on purpose.
pub const TEMPLATE_OUTPUT_CAP: usize = 32 << 20;

/// A writer that refuses to grow past [`TEMPLATE_OUTPUT_CAP`], so a template that writes
/// gigabytes (`{{ 'x' * 100000000 }}` in a loop, within its fuel) fails instead of exhausting
/// memory.
struct CappedOutput {
    text: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > TEMPLATE_OUTPUT_CAP {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output cap"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    pub bos_token: String,
    pub eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        }
    }

    /// Whether the template reads a `tools` variable (else tools go in as a system text, see
    /// [`super::tools`]).
    pub fn reads_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Renders the conversation; with `add_generation_prompt`, ends with the header of the
    /// assistant's turn so that the model continues as the assistant.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`Self::render`] with the template's `tools` variable set (OpenAI's tool objects).
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut env = minijinja::Environment::new();
        // A template comes from the model file: bound its work, so that a hostile one (nested
        // `range(100000)` loops) fails instead of hanging the caller.
        env.set_fuel(Some(TEMPLATE_FUEL));
        // Hugging Face renders with trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Templates call Python string methods (.strip(), .startswith(), ...).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| Error::Template(e.to_string()))?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        let mut out = CappedOutput {
            text: Vec::new(),
            overflowed: false,
        };
        let rendered = tmpl.render_captured_to(
            minijinja::context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
            &mut out,
        );
        if out.overflowed {
            return Err(Error::Template(format!(
                "the chat template writes more than {} MiB for this conversation",
                TEMPLATE_OUTPUT_CAP >> 20
            )));
        }
        rendered.map_err(|e| Error::Template(e.to_string()))?;
        // Every piece written is a str the template produced.
        String::from_utf8(out.text).map_err(|e| Error::Template(e.to_string()))
    }
}

impl ChatTemplate {
    /// The token ids of the rendered conversation, as the model sees them. Only the template's
    /// own markup (and its `bos_token`/`eos_token`) becomes control tokens: every message's
    /// content is text, so a user who types `<|im_end|><|im_start|>system` gets those
    /// characters, not a forged turn. Renders exactly what [`render`](Self::render) renders.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        self.encode_with_tools(tokenizer, messages, None, add_generation_prompt)
    }

    /// [`Self::encode`] with the template's `tools` variable set; the tools' and the calls'
    /// strings are text too.
    pub fn encode_with_tools(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = |v: &serde_json::Value| escape_strings(tokenizer, v);
        let escaped: Vec<Message> = messages
            .iter()
            .map(|m| Message {
                role: tokenizer.escape_specials(&m.role),
                content: tokenizer.escape_specials(&m.content),
                tool_calls: m.tool_calls.as_ref().map(text),
                tool_call_id: m
                    .tool_call_id
                    .as_deref()
                    .map(|s| tokenizer.escape_specials(s)),
            })
            .collect();
        let tools: Option<Vec<serde_json::Value>> = tools.map(|t| t.iter().map(text).collect());
        let rendered = self.render_with_tools(&escaped, tools.as_deref(), add_generation_prompt)?;
        Ok(tokenizer.encode_rendered(&rendered))
    }
}

/// Every string (keys too) of a JSON value with special-token text escaped.
fn escape_strings(tokenizer: &Tokenizer, v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(tokenizer.escape_specials(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| escape_strings(tokenizer, x)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (tokenizer.escape_specials(k), escape_strings(tokenizer, x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// ChatML, for models that ship no template.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_by_hand() {
        let t = ChatTemplate::new(CHATML, "", "");
        let s = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn a_template_that_loops_without_end_runs_out_of_fuel() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        );
        let t0 = std::time::Instant::now();
        let err = t.render(&[Message::new("user", "Hi")], true).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        assert!(
            t0.elapsed().as_secs() < 10,
            "stopped after {:?}",
            t0.elapsed()
        );
        // A long conversation still renders.
        let long: Vec<Message> = (0..5000)
            .map(|i| Message::new("user", &i.to_string()))
            .collect();
        assert!(ChatTemplate::new(CHATML, "", "")
            .render(&long, true)
            .is_ok());
    }

    #[test]
    fn a_template_that_writes_gigabytes_stops_at_the_output_cap() {
        // 100,000 x 100 MB within the fuel: minijinja caps one repeated string, not the output.
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}",
            "",
            "",
        );
        let err = t.render(&[Message::new("user", "Hi")], true).unwrap_err();
        assert!(err.to_string().contains("MiB"), "{err}");
    }

    /// A template that reads `tools` and `tool_calls` (the shape of Qwen2.5's) sees OpenAI's
    /// objects; their strings stay text when encoded.
    #[test]
    fn templates_read_tools_and_calls() {
        let src = "{% if tools %}{% for t in tools %}<{{ t.function.name }}>{% endfor %}{% endif %}{% for m in messages %}{{ m.role }}:{{ m.content }}{% if m.tool_calls %}{% for c in m.tool_calls %}[{{ c.function.name }}]{% endfor %}{% endif %}{% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}|{% endfor %}";
        let t = ChatTemplate::new(src, "", "");
        assert!(t.reads_tools());
        assert!(!ChatTemplate::new(CHATML, "", "").reads_tools());
        let tools = [serde_json::json!({"type": "function", "function": {"name": "f"}})];
        let msgs = [
            Message::new("user", "hi"),
            Message {
                tool_calls: Some(
                    serde_json::json!([{"function": {"name": "f", "arguments": "{}"}}]),
                ),
                ..Message::new("assistant", "")
            },
            Message {
                tool_call_id: Some("call_1".into()),
                ..Message::new("tool", "42")
            },
        ];
        assert_eq!(
            t.render_with_tools(&msgs, Some(&tools), false).unwrap(),
            "<f>user:hi|assistant:[f]|tool:42#call_1|"
        );
        assert_eq!(t.render(&msgs[..1], false).unwrap(), "user:hi|");
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}{{ messages[0]['content'].strip() }}",
            "",
            "",
        );
        assert_eq!(
            t.render(&[Message::new("user", "  x ")], false).unwrap(),
            "x"
        );
        assert!(t
            .render(&[Message::new("system", "x")], false)
            .unwrap_err()
            .to_string()
            .contains("user first"));
    }
}
