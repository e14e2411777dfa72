//! Tokens. Newlines are kept as tokens because they separate sequence steps; the parser skips
//! them everywhere else.

use crate::ast::Span;
use crate::diag::Diagnostic;
use sequin_core::time::Micros;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A word: names and keywords alike.
    Ident(String),
    /// A quoted string (escapes resolved).
    Str(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A duration such as `30s` (µs).
    Duration(Micros),
    /// Punctuation or operator.
    Sym(&'static str),
    /// End of line (step separator inside sequences).
    Newline,
    /// End of input.
    Eof,
}

/// A token with its span.
#[derive(Debug, Clone)]
pub struct Token {
    /// Kind.
    pub tok: Tok,
    /// Where.
    pub span: Span,
}

const SYMBOLS: [&str; 16] = [
    "==", "!=", "<=", ">=", "<", ">", "{", "}", "(", ")", ";", ",", ".", "|", "-", "[",
];

/// Splits `src` into tokens.
pub fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b'\n' => {
                out.push(tok(Tok::Newline, i, i + 1));
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match src[i..].chars().next() {
                        None | Some('\n') => {
                            return Err(Diagnostic::error(
                                Span { start, end: i },
                                "unterminated string",
                            )
                            .with_hint("close it with `\"`"));
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let esc = src[i + 1..].chars().next();
                            match esc {
                                Some('"') => s.push('"'),
                                Some('\\') => s.push('\\'),
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                _ => {
                                    return Err(Diagnostic::error(
                                        Span {
                                            start: i,
                                            end: i + 2,
                                        },
                                        "unknown escape in string",
                                    )
                                    .with_hint("use \\\" \\\\ \\n or \\t"));
                                }
                            }
                            i += 2;
                        }
                        Some(ch) => {
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push(tok(Tok::Str(s), start, i));
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                    i += 1;
                }
                let mut is_float = false;
                if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                    is_float = true;
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let num_end = i;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let digits: String = src[start..num_end].chars().filter(|&c| c != '_').collect();
                let span = Span { start, end: i };
                if i > num_end {
                    let text = format!("{digits}{}", &src[num_end..i]);
                    let micros = sequin_core::time::parse_duration(&text).map_err(|_| {
                        Diagnostic::error(span, format!("`{}` is not a duration", &src[start..i]))
                            .with_hint("durations look like 500ms, 30s, 5m, 2h, 7d or 2w")
                    })?;
                    out.push(Token {
                        tok: Tok::Duration(micros),
                        span,
                    });
                } else if is_float {
                    out.push(Token {
                        tok: Tok::Float(digits.parse().unwrap()),
                        span,
                    });
                } else {
                    let v = digits.parse::<i64>().map_err(|_| {
                        Diagnostic::error(span, "number too large").with_hint("at most 2^63 - 1")
                    })?;
                    out.push(Token {
                        tok: Tok::Int(v),
                        span,
                    });
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
                {
                    i += 1;
                }
                out.push(tok(Tok::Ident(src[start..i].to_string()), start, i));
            }
            _ => {
                let rest = &src[i..];
                match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                    Some(s) => {
                        out.push(tok(Tok::Sym(s), i, i + s.len()));
                        i += s.len();
                    }
                    None => {
                        let ch = rest.chars().next().unwrap();
                        let span = Span {
                            start: i,
                            end: i + ch.len_utf8(),
                        };
                        let hint = match ch {
                            '=' => "compare with `==`",
                            '&' => "write `and`",
                            '!' => "write `not`, or `!=` to compare",
                            '\'' => "strings use double quotes",
                            _ => "remove it, or quote the name: \"…\"",
                        };
                        return Err(Diagnostic::error(
                            span,
                            format!("unexpected character `{ch}`"),
                        )
                        .with_hint(hint));
                    }
                }
            }
        }
    }
    out.push(tok(Tok::Eof, src.len(), src.len()));
    Ok(out)
}

fn tok(tok: Tok, start: usize, end: usize) -> Token {
    Token {
        tok,
        span: Span { start, end },
    }
}
