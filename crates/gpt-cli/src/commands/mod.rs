pub mod bench;
pub mod chat;
pub mod generate;
pub mod inspect;
pub mod models;
pub mod tokenize;
pub mod tokenizer;
pub mod train;
