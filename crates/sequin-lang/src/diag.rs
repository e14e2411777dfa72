//! Diagnostics that point at the source: a message, the line with a caret under the span,
//! and a hint, in the style of rustc.

use crate::ast::Span;

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// Suspicious but usable.
    Warning,
}

/// One finding about the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Is it an error?
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic against its source:
    ///
    /// ```text
    /// error: unknown event `purchse`
    ///  --> seed.seg:3:7
    ///   |
    /// 3 |   did purchse
    ///   |       ^^^^^^^
    ///   = hint: did you mean `purchase`?
    /// ```
    pub fn render(&self, file: &str, src: &str) -> String {
        let (line_no, col, line) = locate(src, self.span.start);
        let width = line_no.to_string().len();
        let pad = " ".repeat(width);
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let line_end = self.span.start - (col - 1) + line.len();
        let caret_len = self
            .span
            .end
            .min(line_end)
            .saturating_sub(self.span.start)
            .max(1);
        let caret_col = line[..col - 1].chars().count();
        let mut out = format!(
            "{level}: {}\n{pad}--> {file}:{line_no}:{col}\n{pad} |\n{line_no} | {line}\n{pad} | {}{}\n",
            self.message,
            " ".repeat(caret_col),
            "^".repeat(
                src[self.span.start..self.span.start + caret_len]
                    .chars()
                    .count()
                    .max(1)
            ),
        );
        if let Some(h) = &self.hint {
            out.push_str(&format!("{pad} = hint: {h}\n"));
        }
        out
    }
}

/// 1-based line and byte column of `offset`, and the line's text.
fn locate(src: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(src.len());
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line_no = src[..offset].matches('\n').count() + 1;
    (line_no, offset - line_start + 1, &src[line_start..line_end])
}

/// The closest candidate to `name` by edit distance, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_sits_under_the_span() {
        let src = "segment a {\n  did purchse\n}\n";
        let start = src.find("purchse").unwrap();
        let d = Diagnostic::error(
            Span {
                start,
                end: start + 7,
            },
            "unknown event `purchse`",
        )
        .with_hint("did you mean `purchase`?");
        let text = d.render("x.seg", src);
        assert_eq!(
            text,
            "error: unknown event `purchse`\n --> x.seg:2:7\n  |\n2 |   did purchse\n  |       ^^^^^^^\n  = hint: did you mean `purchase`?\n"
        );
    }

    #[test]
    fn suggestions_are_close_matches_only() {
        assert_eq!(
            did_you_mean("purchse", ["purchase", "page_view"]),
            Some("purchase")
        );
        assert_eq!(did_you_mean("zzz", ["purchase", "page_view"]), None);
    }
}
