//! The JSON of each look inside the model, built once: `gpt inspect ... --json` prints it and
//! `gpt serve` answers it at `/inspect/...` (the walk-through page at `/explain` draws it), so a
//! notebook, the page and the command line see the same numbers.
//!
//! Prompts are encoded as the CLI encodes them ([`LoadedModel::encode_prompt`]: BOS only if the
//! model's tokenizer adds one). Token entries carry the vocabulary string (`token`, e.g.
//! "Ġking") and the decoded text (`piece`, " king"; bytes that are not whole UTF-8 characters
//! as U+FFFD).

use super::attention_patterns::LayerAttention;
use super::logit_lens::{LogitLens, TokenProb};
use super::params_table::{preset, Accounting, ParamTable};
use super::probes::{self, SpaceRule, WordVector};
use super::temperature::TemperatureTable;
use crate::model::Logits;
use crate::{Error, LoadedModel, Result};
use serde_json::{json, Value};

/// Encodes a prompt, refusing an empty one.
pub fn encode(m: &LoadedModel, prompt: &str) -> Result<Vec<u32>> {
    let ids = m.encode_prompt(prompt, true);
    if ids.is_empty() {
        return Err(Error::Invalid(
            "the prompt is empty: there is nothing to look at".into(),
        ));
    }
    Ok(ids)
}

/// The vocabulary string of a token.
fn token(m: &LoadedModel, id: u32) -> &str {
    m.tokenizer.token_str(id).unwrap_or("")
}

/// The text a token decodes to.
fn piece(m: &LoadedModel, id: u32) -> String {
    String::from_utf8_lossy(m.tokenizer.token_bytes(id).unwrap_or(&[])).into_owned()
}

fn candidate(m: &LoadedModel, id: u32, logit: f32, prob: f64) -> Value {
    json!({"id": id, "token": token(m, id), "piece": piece(m, id), "logit": logit, "prob": prob})
}

/// `{"ids", "tokens", "pieces"}`: how the prompt was cut.
pub fn tokens(m: &LoadedModel, ids: &[u32]) -> Value {
    json!({
        "ids": ids,
        "tokens": ids.iter().map(|&i| token(m, i)).collect::<Vec<_>>(),
        "pieces": ids.iter().map(|&i| piece(m, i)).collect::<Vec<_>>(),
    })
}

/// [`tokens`] and `"vectors"` (T, C): each token's row of the token embedding matrix.
pub fn embeddings(m: &LoadedModel, ids: &[u32]) -> Result<Value> {
    let table = &m.transformer.token_embedding.table;
    let vectors = ids
        .iter()
        .map(|&i| probes::row(table, i))
        .collect::<Result<Vec<_>>>()?;
    let mut v = tokens(m, ids);
    v["vectors"] = json!(vectors);
    Ok(v)
}

/// `{"word", "ids", "tokens", "multi_token"}`
pub fn word(m: &LoadedModel, w: &WordVector) -> Value {
    json!({
        "word": w.word,
        "ids": w.ids,
        "tokens": w.ids.iter().map(|&i| token(m, i)).collect::<Vec<_>>(),
        "multi_token": w.multi_token(),
    })
}

/// `{"a", "b", "dot", "cosine", "norm_a", "norm_b"}` of two words (or `#ID` tokens).
pub fn similarity(m: &LoadedModel, a: &str, b: &str, rule: SpaceRule) -> Result<Value> {
    let table = &m.transformer.token_embedding.table;
    let wa = probes::word_vector(table, &m.tokenizer, a, rule)?;
    let wb = probes::word_vector(table, &m.tokenizer, b, rule)?;
    Ok(json!({
        "a": word(m, &wa), "b": word(m, &wb),
        "dot": probes::dot(&wa.vector, &wb.vector),
        "cosine": probes::cosine(&wa.vector, &wb.vector),
        "norm_a": probes::norm(&wa.vector), "norm_b": probes::norm(&wb.vector),
    }))
}

/// Each word's coordinate along a direction given as an expression ("woman - man"):
/// `{"direction", "terms": [word], "words": [word + "projection", "cosine"]}`.
pub fn projection(
    m: &LoadedModel,
    direction: &str,
    words: &[String],
    rule: SpaceRule,
) -> Result<Value> {
    let table = &m.transformer.token_embedding.table;
    let e = probes::expression_vector(table, &m.tokenizer, direction, rule)?;
    let items = words
        .iter()
        .map(|w| {
            let wv = probes::word_vector(table, &m.tokenizer, w, rule)?;
            let mut j = word(m, &wv);
            j["projection"] = json!(probes::projection(&wv.vector, &e.vector));
            j["cosine"] = json!(probes::cosine(&wv.vector, &e.vector));
            Ok(j)
        })
        .collect::<Result<Vec<_>>>()?;
    let terms: Vec<_> = e.terms.iter().map(|(_, w)| word(m, w)).collect();
    Ok(json!({"direction": direction, "terms": terms, "words": items}))
}

/// One layer's heads: `[{"layer", "head", "tokens", "pattern": (T, T)}]` (row = query).
pub fn attention(m: &LoadedModel, ids: &[u32], layer: usize, heads: &[usize]) -> Result<Value> {
    let att = LayerAttention::record(&m.transformer, ids, layer)?;
    let tokens: Vec<String> = ids.iter().map(|&i| token(m, i).to_string()).collect();
    let heads: Vec<usize> = if heads.is_empty() {
        (0..att.n_head).collect()
    } else {
        heads.to_vec()
    };
    Ok(Value::Array(
        heads
            .iter()
            .map(|&h| att.head_json(h, &tokens))
            .collect::<Result<_>>()?,
    ))
}

/// The logit lens: `{"ids", "layers": [{"layer", "top": [candidate]}]}`, one entry per layer.
pub fn lens(m: &LoadedModel, ids: &[u32], top: usize) -> Result<Value> {
    let lens = LogitLens::new(&m.transformer, ids, top)?;
    let layers: Vec<_> = lens
        .top
        .iter()
        .enumerate()
        .map(|(l, top)| {
            let top: Vec<_> = top
                .iter()
                .map(|&TokenProb { id, logit, prob }| candidate(m, id, logit, prob as f64))
                .collect();
            json!({"layer": l, "top": top})
        })
        .collect();
    Ok(json!({"ids": ids, "layers": layers}))
}

/// The last position's logits (V).
pub fn last_logits(m: &LoadedModel, ids: &[u32]) -> Result<Vec<f32>> {
    let mut cache = m.transformer.new_cache();
    m.transformer.forward(ids, &mut cache, Logits::Last, None)
}

/// The log of the sum of `exp(logits)`, in f64.
pub fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// The next-token distribution: `{"ids", "top": [candidate], "logsumexp"}`.
pub fn logits(m: &LoadedModel, ids: &[u32], top: usize) -> Result<Value> {
    let logits = last_logits(m, ids)?;
    let lse = logsumexp(&logits);
    let top: Vec<_> = crate::infer::sampling::top_k(&logits, top)
        .iter()
        .map(|c| candidate(m, c.id, c.score, (c.score as f64 - lse).exp()))
        .collect();
    Ok(json!({"ids": ids, "top": top, "logsumexp": lse}))
}

/// The top tokens' probabilities at each temperature (over the whole vocabulary):
/// `{"ids", "temperatures", "tokens": [candidate without "prob", "probs": per T], "rest": per T}`.
pub fn temperature(
    m: &LoadedModel,
    ids: &[u32],
    temperatures: &[f32],
    top: usize,
) -> Result<Value> {
    let t = TemperatureTable::new(&last_logits(m, ids)?, temperatures, top)?;
    let tokens: Vec<_> = t
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            json!({
                "id": id, "token": token(m, id), "piece": piece(m, id), "logit": t.logits[i],
                "probs": t.probs.iter().map(|p| p[i]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let rest: Vec<f32> = (0..t.temperatures.len()).map(|s| t.rest(s)).collect();
    Ok(json!({"ids": ids, "temperatures": t.temperatures, "tokens": tokens, "rest": rest}))
}

/// Where a loaded model's parameters are: `{"tables": [table]}`.
pub fn params(m: &LoadedModel) -> Value {
    let title = format!("{} ({})", m.source.display(), m.description);
    json!({"tables": [ParamTable::from_model(&m.transformer, &title).to_json()]})
}

/// A preset's parameters, in the seed's accounting (weight matrices) and in full:
/// `{"tables": [two tables], "preset": {hyperparameters}}`.
pub fn preset_params(name: &str) -> Result<Value> {
    let p = preset(name)?;
    Ok(json!({
        "tables": [p.table(Accounting::WeightMatrices).to_json(), p.table(Accounting::Full).to_json()],
        "preset": {
            "name": p.name, "n_layer": p.n_layer, "d_model": p.d_model, "n_head": p.n_head,
            "n_kv_head": p.n_kv_head, "d_ff": p.d_ff, "vocab_size": p.vocab_size,
            "context_length": p.context_length, "tied_embeddings": p.tied_embeddings,
        },
    }))
}
