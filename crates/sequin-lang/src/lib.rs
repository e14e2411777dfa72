//! The Sequin segment language: a lexer, a recursive-descent parser, a checker and a
//! canonical formatter, with diagnostics that point at the source (caret and hint).
//!
//! ```
//! let file = sequin_lang::parse("segment buyers { did purchase }").unwrap();
//! assert!(sequin_lang::check(&file, None).is_empty());
//! assert_eq!(sequin_lang::format_file(&file), "segment buyers {\n    did purchase\n}\n");
//! ```

pub mod ast;
pub mod check;
pub mod diag;
pub mod fmt;
pub mod lexer;
pub mod parser;

pub use ast::SegFile;
pub use check::{Catalog, check};
pub use diag::{Diagnostic, Severity};
pub use fmt::format_file;
pub use parser::parse;
