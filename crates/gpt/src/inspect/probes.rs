//! Embedding geometry: the rows of the token embedding matrix (V, C) as vectors. Similar meanings
//! sit close together, directions carry meaning (woman - man, cats - cat), and the dot product
//! measures how well two vectors align (positive: same way, 0: perpendicular, negative: opposed).
//!
//! # Words and tokens
//! A word is looked up by encoding it with the model's tokenizer. By default ([`SpaceRule::Leading`])
//! the text encoded is `" " + word`: in GPT-2-style byte-level vocabularies a word inside a
//! sentence is the token with a leading space ("Ġking"), and that is the row that carries the
//! word's meaning; [`SpaceRule::AsIs`] encodes the word exactly as given. `#ID` names a token by
//! id. A word that encodes to several tokens is the mean of their rows, and is flagged
//! ([`WordVector::multi_token`]).
//!
//! Rows are dequantized with the model's own [`Matrix::row_f32`].

use crate::tensor::Matrix;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use rayon::prelude::*;

/// How a word becomes text to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpaceRule {
    /// Encode `" " + word` (the form a word takes inside a sentence).
    #[default]
    Leading,
    /// Encode the word exactly as given.
    AsIs,
}

/// A word (or token) and its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct WordVector {
    /// As the user wrote it.
    pub word: String,
    /// The token ids it stands for.
    pub ids: Vec<u32>,
    /// (C) the mean of their embedding rows.
    pub vector: Vec<f32>,
}

impl WordVector {
    /// True when the word is several tokens (its vector is their mean).
    pub fn multi_token(&self) -> bool {
        self.ids.len() > 1
    }
}

/// Row `id` of `table` (V, C) as f32 (C), or an error naming the valid range.
pub fn row(table: &Matrix, id: u32) -> Result<Vec<f32>> {
    if id as usize >= table.rows {
        return Err(Error::Invalid(format!(
            "token id {id} is outside the vocabulary (0..={})",
            table.rows.saturating_sub(1)
        )));
    }
    let mut v = vec![0f32; table.cols];
    table.row_f32(id as usize, &mut v);
    Ok(v)
}

/// The mean of rows `ids` of `table` (V, C): (C).
pub fn mean_of_rows(table: &Matrix, ids: &[u32]) -> Result<Vec<f32>> {
    if ids.is_empty() {
        return Err(Error::Invalid("no tokens to average".into()));
    }
    let mut sum = vec![0f32; table.cols];
    for &id in ids {
        for (s, v) in sum.iter_mut().zip(row(table, id)?) {
            *s += v;
        }
    }
    let n = ids.len() as f32;
    sum.iter_mut().for_each(|s| *s /= n);
    Ok(sum)
}

/// Looks a word up: `#ID` is a token id; anything else is encoded under `rule`.
pub fn word_vector(
    table: &Matrix,
    tokenizer: &Tokenizer,
    word: &str,
    rule: SpaceRule,
) -> Result<WordVector> {
    if word.is_empty() {
        return Err(Error::Invalid("an empty word has no embedding".into()));
    }
    let ids = match word.strip_prefix('#').map(str::parse::<u32>) {
        Some(Ok(id)) => vec![id],
        _ => {
            let text = match rule {
                SpaceRule::Leading => format!(" {word}"),
                SpaceRule::AsIs => word.to_string(),
            };
            tokenizer.encode(&text, false)
        }
    };
    if ids.is_empty() {
        return Err(Error::Invalid(format!("'{word}' encodes to no tokens")));
    }
    Ok(WordVector {
        word: word.to_string(),
        vector: mean_of_rows(table, &ids)?,
        ids,
    })
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// a·b / (|a| |b|); 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d = norm(a) * norm(b);
    if d > 0.0 {
        dot(a, b) / d
    } else {
        0.0
    }
}

/// The coordinate of `v` along `direction`: v·d / |d| (0 for a zero direction).
pub fn projection(v: &[f32], direction: &[f32]) -> f32 {
    let n = norm(direction);
    if n > 0.0 {
        dot(v, direction) / n
    } else {
        0.0
    }
}

/// A token and its cosine similarity to a query vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub id: u32,
    pub cosine: f32,
}

/// The `k` rows of `table` (V, C) most similar by cosine to `query` (C), best first, skipping
/// the ids in `exclude`. Ties go to the lower id.
pub fn nearest(table: &Matrix, query: &[f32], k: usize, exclude: &[u32]) -> Result<Vec<Neighbour>> {
    if query.len() != table.cols {
        return Err(Error::Invalid(format!(
            "a vector of {} values cannot be compared with embeddings of {}",
            query.len(),
            table.cols
        )));
    }
    let qn = norm(query);
    let mut all: Vec<Neighbour> = (0..table.rows)
        .into_par_iter()
        .filter(|&id| !exclude.contains(&(id as u32)))
        .map_init(
            || vec![0f32; table.cols],
            |r, id| {
                table.row_f32(id, r);
                let d = qn * norm(r);
                let cosine = if d > 0.0 { dot(query, r) / d } else { 0.0 };
                Neighbour {
                    id: id as u32,
                    cosine,
                }
            },
        )
        .collect();
    let by = |a: &Neighbour, b: &Neighbour| b.cosine.total_cmp(&a.cosine).then(a.id.cmp(&b.id));
    let k = k.min(all.len());
    if k == 0 {
        return Ok(Vec::new());
    }
    all.select_nth_unstable_by(k - 1, by);
    all.truncate(k);
    all.sort_by(by);
    Ok(all)
}

/// Parses `"king - man + woman"` into signed terms [(+1, king), (-1, man), (+1, woman)].
/// Operators stand alone between spaces (so "well-known" stays one word); the first term may
/// carry a sign.
pub fn parse_expression(expr: &str) -> Result<Vec<(f32, String)>> {
    let mut terms = Vec::new();
    let mut sign: Option<f32> = None;
    for piece in expr.split_whitespace() {
        match piece {
            "+" | "-" => {
                if sign.is_some() {
                    return Err(Error::Invalid(format!("'{expr}': two operators in a row")));
                }
                sign = Some(if piece == "-" { -1.0 } else { 1.0 });
            }
            word => {
                if sign.is_none() && !terms.is_empty() {
                    return Err(Error::Invalid(format!(
                        "'{expr}': expected + or - (with spaces around it) before '{word}'"
                    )));
                }
                terms.push((sign.take().unwrap_or(1.0), word.to_string()));
            }
        }
    }
    if sign.is_some() || terms.is_empty() {
        return Err(Error::Invalid(format!(
            "'{expr}': expected words joined by + and -, e.g. \"king - man + woman\""
        )));
    }
    Ok(terms)
}

/// The signed sum of vectors, each (C): sum of sign * v.
pub fn combine(terms: &[(f32, &[f32])]) -> Vec<f32> {
    let c = terms.first().map_or(0, |t| t.1.len());
    let mut out = vec![0f32; c];
    for (s, v) in terms {
        for (o, x) in out.iter_mut().zip(v.iter()) {
            *o += s * x;
        }
    }
    out
}

/// An expression of words evaluated: the vector and the signed words it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    /// (C)
    pub vector: Vec<f32>,
    pub terms: Vec<(f32, WordVector)>,
}

impl Expression {
    /// Every token id of every word (to exclude from an analogy's answers).
    pub fn ids(&self) -> Vec<u32> {
        self.terms.iter().flat_map(|(_, w)| w.ids.clone()).collect()
    }
}

/// Evaluates an expression of words into one vector, with the words it used.
pub fn expression_vector(
    table: &Matrix,
    tokenizer: &Tokenizer,
    expr: &str,
    rule: SpaceRule,
) -> Result<Expression> {
    let terms = parse_expression(expr)?
        .into_iter()
        .map(|(s, w)| Ok((s, word_vector(table, tokenizer, &w, rule)?)))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<(f32, &[f32])> = terms
        .iter()
        .map(|(s, w)| (*s, w.vector.as_slice()))
        .collect();
    Ok(Expression {
        vector: combine(&refs),
        terms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_with_signs() {
        let t = parse_expression("king - man + woman").unwrap();
        assert_eq!(
            t,
            vec![
                (1.0, "king".into()),
                (-1.0, "man".into()),
                (1.0, "woman".into())
            ]
        );
        assert_eq!(
            parse_expression("- cat").unwrap(),
            vec![(-1.0, "cat".into())]
        );
        assert!(parse_expression("king man").is_err());
        assert!(parse_expression("king -").is_err());
        assert!(parse_expression("").is_err());
        assert!(parse_expression("a + - b").is_err());
    }

    #[test]
    fn cosine_and_projection_by_hand() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert!((projection(&[3.0, 4.0], &[0.0, 2.0]) - 4.0).abs() < 1e-6);
    }
}
