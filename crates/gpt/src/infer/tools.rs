//! Tool calls (function calling). The tools reach the model through its chat template's `tools`
//! variable where the template reads one; otherwise through a system text in the Hermes format
//! (the one Qwen2.5's and NousResearch Hermes' templates write), which many small instruct models
//! have seen. Either way the model answers a call as
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Seoul"}}
//! </tool_call>
//! ```
//!
//! and [`parse`] turns such blocks back into calls. When a call is required (`tool_choice`
//! `required`, or a named function), [`grammar`] gives the constraint that makes the model write
//! exactly one valid block, whatever its weights say.

use super::chat_template::Message;
use super::constraint::Grammar;
use serde_json::{json, Value};

/// A function the model may call: its name, what it does, and its parameters as a JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
}

impl Tool {
    /// OpenAI's form, `{"type": "function", "function": {...}}`: what templates' `tools` hold.
    pub fn to_json(&self) -> Value {
        let mut f = json!({"name": self.name, "parameters": self.parameters});
        if let Some(d) = &self.description {
            f["description"] = json!(d);
        }
        json!({"type": "function", "function": f})
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides; its answer is parsed for calls.
    Auto,
    /// No tools: they are not shown to the model.
    None,
    /// Exactly one call of any of the tools.
    Required,
    /// Exactly one call of this tool.
    Named(String),
}

/// A call the model made: the function's name and its arguments (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub arguments: Value,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// The system text that shows the tools to a model whose template has no `tools` variable
/// (Qwen2.5's wording).
pub fn system_text(tools: &[Tool]) -> String {
    let list: Vec<String> = tools.iter().map(|t| t.to_json().to_string()).collect();
    format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\n\
         For each function call, return a json object with function name and arguments within \
         {OPEN}{CLOSE} XML tags:\n{OPEN}\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n{CLOSE}",
        list.join("\n")
    )
}

/// A conversation for a template without `tools`: the tool text joins the system message (or
/// becomes one), earlier calls become `<tool_call>` blocks in the assistant's text, and tool
/// results become user turns in `<tool_response>` tags, as the Hermes format writes them.
pub fn in_hermes_format(messages: &[Message], tools: &[Tool]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let text = system_text(tools);
        match messages.first() {
            Some(m) if m.role == "system" => {
                out.push(Message::new("system", &format!("{}\n\n{text}", m.content)))
            }
            _ => out.push(Message::new("system", &text)),
        }
    }
    let skip =
        usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m.role == "system"));
    for m in &messages[skip..] {
        let mut m = m.clone();
        if let Some(Value::Array(calls)) = m.tool_calls.take() {
            for c in calls {
                let f = c.get("function").unwrap_or(&c);
                let block = call_json(&f["name"], &f["arguments"]);
                if !m.content.is_empty() {
                    m.content.push('\n');
                }
                m.content += &format!("{OPEN}\n{block}\n{CLOSE}");
            }
        }
        if m.role == "tool" {
            m = Message::new(
                "user",
                &format!("<tool_response>\n{}\n</tool_response>", m.content),
            );
        }
        out.push(m);
    }
    out
}

/// `{"name": ..., "arguments": ...}` in that order; arguments given as a JSON string (OpenAI's
/// form) are written as the object they hold.
fn call_json(name: &Value, arguments: &Value) -> String {
    let arguments = match arguments {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| arguments.clone()),
        Value::Null => json!({}),
        a => a.clone(),
    };
    format!("{{\"name\": {name}, \"arguments\": {arguments}}}")
}

/// The grammar of one call when the choice requires one: `<tool_call>`, a JSON object whose
/// `name` is one of the allowed tools and whose `arguments` follow that tool's parameters,
/// `</tool_call>`. None when the model may answer freely (`auto`, `none`).
pub fn grammar(tools: &[Tool], choice: &ToolChoice) -> Option<Grammar> {
    let allowed: Vec<&Tool> = match choice {
        ToolChoice::Auto | ToolChoice::None => return None,
        ToolChoice::Required => tools.iter().collect(),
        ToolChoice::Named(n) => tools.iter().filter(|t| &t.name == n).collect(),
    };
    let rules: Vec<String> = allowed
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let schema = json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": false,
                "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "},
            });
            format!("call{i}: %json {schema}")
        })
        .collect();
    let names: Vec<String> = (0..allowed.len()).map(|i| format!("call{i}")).collect();
    Some(Grammar::Lark(format!(
        "start: \"{OPEN}\\n\" call \"\\n{CLOSE}\"\ncall: {}\n{}\n",
        names.join(" | "),
        rules.join("\n")
    )))
}

/// The calls in a model's answer, and the text around them. A block is `<tool_call>` JSON
/// `</tool_call>` (the closing tag may be missing at the very end); a block whose JSON is not
/// an object with a string `name` stays text.
pub fn parse(text: &str) -> (String, Vec<Call>) {
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut s = text;
    while let Some(at) = s.find(OPEN) {
        let after = &s[at + OPEN.len()..];
        let (body, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        match serde_json::from_str::<Value>(body.trim()) {
            Ok(v) if v["name"].is_string() => {
                rest.push_str(&s[..at]);
                let arguments = match &v["arguments"] {
                    Value::Null => json!({}),
                    a => a.clone(),
                };
                calls.push(Call {
                    name: v["name"].as_str().unwrap_or_default().to_string(),
                    arguments,
                });
            }
            _ => rest.push_str(&s[..at + OPEN.len() + body.len()]),
        }
        s = next;
    }
    rest.push_str(s);
    (rest.trim().to_string(), calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    #[test]
    fn blocks_are_parsed_and_the_rest_is_text() {
        let (text, calls) = parse(
            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\"}}\n</tool_call>",
        );
        assert_eq!(text, "Let me look.");
        assert_eq!(
            calls,
            vec![Call {
                name: "get_weather".into(),
                arguments: json!({"city": "Seoul"})
            }]
        );
        // Two calls, the last without its closing tag; a broken block stays text.
        let (text, calls) = parse(
            "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\"}",
        );
        assert_eq!((text.as_str(), calls.len()), ("", 2));
        assert_eq!(calls[1].arguments, json!({}));
        let (text, calls) = parse("<tool_call>{not json}</tool_call> ok");
        assert!(calls.is_empty());
        assert_eq!(text, "<tool_call>{not json} ok");
    }

    #[test]
    fn hermes_format_carries_tools_calls_and_results() {
        let msgs = vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Weather in Seoul?"),
            Message {
                tool_calls: Some(json!([{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Seoul"}}}])),
                ..Message::new("assistant", "")
            },
            Message::new("tool", "{\"temp\": 3}"),
        ];
        let out = in_hermes_format(&msgs, &[weather()]);
        assert_eq!(out.len(), 4);
        assert!(out[0].content.starts_with("Be brief.\n\n# Tools"));
        assert!(out[0].content.contains("\"name\":\"get_weather\""));
        assert_eq!(
            out[2].content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Seoul\"}}\n</tool_call>"
        );
        assert_eq!(out[3].role, "user");
        assert_eq!(
            out[3].content,
            "<tool_response>\n{\"temp\": 3}\n</tool_response>"
        );
    }

    #[test]
    fn only_required_and_named_choices_constrain() {
        assert!(grammar(&[weather()], &ToolChoice::Auto).is_none());
        assert!(grammar(&[weather()], &ToolChoice::None).is_none());
        let Some(Grammar::Lark(g)) =
            grammar(&[weather()], &ToolChoice::Named("get_weather".into()))
        else {
            panic!("a Lark grammar")
        };
        assert!(g.contains("\"const\":\"get_weather\""), "{g}");
    }
}
