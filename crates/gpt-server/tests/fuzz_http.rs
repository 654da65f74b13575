//! A mutation fuzzer for the HTTP request bodies, on the stable toolchain: valid requests to
//! every endpoint that takes a body are damaged at random (JSON values swapped for extremes of
//! other types, fields dropped or duplicated, bytes flipped, invalid UTF-8, the body cut short)
//! and sent to a real server on loopback. Every answer must be one the API documents (200, or
//! an OpenAI error: 400, 404, 413, 503), never a 500 or a dropped connection, and afterwards the
//! server must still answer a plain request with no model-step fault recorded.
//!
//! `GPT_RS_FUZZ_ITERS` sets the mutations per request (default 48; run thousands by hand). A
//! failure prints the body, so it replays.

use gpt::LoadedModel;
use gpt_server::{Background, Options};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const MODEL: &str = gpt::hub::DEFAULT_MODEL;

/// splitmix64: a seeded stream, so every failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn iterations() -> usize {
    std::env::var("GPT_RS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// Values of every JSON type, at their extremes.
fn extreme(rng: &mut Rng) -> Value {
    let all = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!(-1e-308),
        json!(""),
        json!("x".repeat(5000)),
        json!("<|im_start|>system\n\u{0}\u{ffff}"),
        json!([]),
        json!([[[[1]]]]),
        json!([4294967295u64, -5, 0.5]),
        json!({}),
        json!({"role": "user", "content": [{"type": "text", "text": 7}]}),
    ];
    all[rng.below(all.len())].clone()
}

/// One random edit of a JSON value: a leaf replaced, a key dropped or added.
fn mutate_json(v: &mut Value, rng: &mut Rng) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.below(4) > 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            match rng.below(5) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    m.insert(format!("{k}_extra"), extreme(rng));
                }
                _ => mutate_json(m.get_mut(k).unwrap(), rng),
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(4) > 0 => {
            let i = rng.below(a.len());
            if rng.below(3) == 0 {
                a.push(a[i].clone());
            } else {
                mutate_json(&mut a[i], rng);
            }
        }
        _ => *v = extreme(rng),
    }
}

/// A body: the request with a few JSON edits, sometimes then damaged as bytes.
fn body(base: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut v = base.clone();
    for _ in 0..1 + rng.below(3) {
        mutate_json(&mut v, rng);
    }
    let mut b = serde_json::to_vec(&v).unwrap();
    match rng.below(6) {
        0 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 => b.truncate(rng.below(b.len())),
        2 => b.extend_from_slice(&[0xff, 0xfe, b'"']),
        _ => {}
    }
    b
}

/// Sends one request and reads the whole answer (the connection closes after it).
fn send(addr: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

#[test]
fn damaged_request_bodies_get_documented_answers() {
    let path = gpt::hub::resolve(MODEL, &mut |_, _, _| {}).expect("the default model");
    let mut opts = Options::new(MODEL);
    // Small bounds keep each request short, whatever the mutation asks for.
    (opts.ctx, opts.max_tokens, opts.parallel) = (256, 8, 2);
    let server = Background::start(LoadedModel::open(&path).unwrap(), opts).unwrap();
    let addr = server.addr;
    let chat = json!({"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0.7, "top_p": 0.9,
        "seed": 1, "stop": ["\n"], "logprobs": true, "top_logprobs": 2});
    let requests = [
        ("/v1/chat/completions", chat.clone()),
        ("/v1/chat/completions", {
            let mut c = chat.clone();
            c["stream"] = json!(true);
            c["stream_options"] = json!({"include_usage": true});
            c
        }),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Once", "max_tokens": 4,
            "logprobs": 2, "echo": true, "n": 1, "presence_penalty": 0}),
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, 2, 3], "max_tokens": 3, "stream": true}),
        ),
        (
            "/v1/embeddings",
            json!({"model": MODEL, "input": ["a cat", "a dog"], "encoding_format": "float"}),
        ),
        (
            "/tokenize",
            json!({"prompt": "Tokens are not words", "add_special_tokens": true}),
        ),
        ("/detokenize", json!({"tokens": [1, 2, 3]})),
        (
            "/page/attention",
            json!({"prompt": "The fluffy creature", "layer": 0, "head": 0}),
        ),
        ("/inspect/tokens", json!({"prompt": "Tokens are not words"})),
        ("/inspect/embeddings", json!({"prompt": "a cat"})),
        (
            "/inspect/similarity",
            json!({"a": "cat", "b": "#504", "as_is": false}),
        ),
        (
            "/inspect/projection",
            json!({"direction": "woman - man", "words": ["king", "queen"]}),
        ),
        (
            "/inspect/attention",
            json!({"prompt": "The cat", "layer": 1, "heads": [0, 2]}),
        ),
        ("/inspect/lens", json!({"prompt": "The cat", "top": 2})),
        ("/inspect/logits", json!({"prompt": "The cat", "top": 3})),
        (
            "/inspect/temperature",
            json!({"prompt": "The cat", "temperatures": [0, 0.7], "top": 4}),
        ),
    ];
    let allowed = [200, 400, 404, 413, 503];
    let mut rng = Rng(0x5eed_f0f0);
    let mut sent = 0;
    for (path, base) in &requests {
        for i in 0..iterations() {
            let b = body(base, &mut rng);
            let shown = String::from_utf8_lossy(&b)
                .chars()
                .take(400)
                .collect::<String>();
            let (status, text) = send(addr, path, &b).unwrap_or_else(|e| {
                panic!("{path} #{i}: connection failed ({e}) for body {shown}")
            });
            assert!(
                allowed.contains(&status),
                "{path} #{i}: status {status} for body {shown}\nanswer: {}",
                text.chars().take(600).collect::<String>()
            );
            if status != 200 {
                assert!(
                    text.contains("\"error\""),
                    "{path} #{i}: {status} without OpenAI's error shape: {text}"
                );
            }
            sent += 1;
        }
    }
    assert_eq!(sent, requests.len() * iterations());
    // Still serving, and nothing panicked inside a model step.
    let ok = send(
        addr,
        "/v1/completions",
        br#"{"prompt":"One, two,","max_tokens":2}"#,
    )
    .unwrap();
    assert_eq!(ok.0, 200, "{}", ok.1);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut h = String::new();
    s.read_to_string(&mut h).unwrap();
    assert!(h.contains("\"faults\":0"), "{h}");
}
