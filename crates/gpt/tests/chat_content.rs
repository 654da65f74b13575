//! Chat content is always text: the control-token texts inside messages are encoded as plain
//! text, and only the template's markup yields control tokens. Runs over every case and
//! tokenizer of tests/fixtures/chat-content/cases.json.

use gpt::infer::chat_template::{ChatTemplate, Message, CHATML};
use gpt::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat-content")
}

#[test]
fn control_token_texts_in_messages_stay_text() {
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    let conversations: Vec<Vec<Message>> = serde_json::from_value(cases["cases"].clone()).unwrap();
    for t in cases["tokenizers"].as_array().unwrap() {
        let path = fixtures().join(t["path"].as_str().unwrap());
        let tok = Tokenizer::from_tokenizer_json(&path).unwrap();
        assert_eq!(t["template"], "chatml", "only ChatML cases so far");
        let template = ChatTemplate::new(CHATML, "", "");
        for msgs in &conversations {
            let ids = template.encode(&tok, msgs, true).unwrap();
            // The text the model reads is the rendered conversation, character for character.
            let rendered = template.render(msgs, true).unwrap();
            assert_eq!(tok.decode_text(&ids, true), rendered, "{path:?} {msgs:?}");
            // Its control tokens are those of the same conversation with harmless contents.
            let plain: Vec<Message> = msgs.iter().map(|m| Message::new(&m.role, "x")).collect();
            let want = template.encode(&tok, &plain, true).unwrap();
            let controls = |ids: &[u32]| -> Vec<u32> {
                ids.iter().copied().filter(|&i| tok.is_special(i)).collect()
            };
            assert_eq!(controls(&ids), controls(&want), "{path:?} {msgs:?}");
            // And the contents encode as they do outside any template.
            for m in msgs {
                let text = tok.encode(&m.content, false);
                assert!(
                    ids.windows(text.len().max(1)).any(|w| w == &text[..]) || text.is_empty(),
                    "{path:?}: the content {:?} is not encoded as text",
                    m.content
                );
            }
        }
    }
}
