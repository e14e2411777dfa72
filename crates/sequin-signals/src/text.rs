//! The text measures of the agent signals: content words, the rephrase similarity, the
//! aggressive-reply rule, and end markers.
//!
//! - **Content words**: lower-cased runs of letters and digits, English stop words removed,
//!   a light suffix strip (`orders` → `order`, `cancelled` → `cancell`), so two wordings of
//!   one request share their nouns and verbs.
//! - **Similarity** of two messages: the cosine of their content-word sets,
//!   |A ∩ B| / √(|A|·|B|) (1 = same words, 0 = none shared). Messages with fewer than
//!   `min_words` content words are never compared (a "yes" after a "yes" is not a restated
//!   request).

/// Markers some simulators and SDKs put in the text to end a conversation; they are not words.
pub const END_MARKERS: &[&str] = &["###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###"];

const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but",
    "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her",
    "here", "hi", "hello", "him", "his", "how", "i", "if", "im", "in", "into", "is", "it", "its",
    "just", "let", "like", "me", "my", "of", "on", "or", "our", "please", "she", "should", "so",
    "that", "thats", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "to", "too", "up", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why",
    "will", "with", "would", "you", "your", "yes", "no", "ok", "okay", "thanks", "thank", "sure",
    "d", "ll", "m", "re", "s", "t", "ve", "don", "want", "need", "know", "get", "one", "now",
    "again", "still", "right", "well", "very", "much", "more",
];

const POLITE: &[&str] = &[
    "please",
    "thanks",
    "thank",
    "appreciate",
    "sorry",
    "great",
    "perfect",
    "awesome",
    "wonderful",
    "excellent",
    "glad",
];

const BLUNT: &[&str] = &[
    "useless",
    "ridiculous",
    "stupid",
    "terrible",
    "awful",
    "horrible",
    "pathetic",
    "unacceptable",
    "seriously",
    "enough",
    "nonsense",
    "pointless",
    "waste",
    "wasting",
    "ugh",
    "whatever",
    "human",
    "person",
    "manager",
    "supervisor",
    "listening",
    "incompetent",
    "joke",
    "damn",
    "hell",
    "wtf",
    "now",
    "just",
    "already",
    "wrong",
    "stop",
];

/// The text without end markers, trimmed.
pub fn strip_markers(text: &str) -> String {
    let mut t = text.to_string();
    for m in END_MARKERS {
        t = t.replace(m, " ");
    }
    t.trim().to_string()
}

/// Lower-cased words (runs of letters, digits and apostrophes, apostrophes dropped).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.replace('\'', "").to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

fn stem(w: &str) -> &str {
    let n = w.len();
    if n > 5 && w.ends_with("ing") {
        return &w[..n - 3];
    }
    if n > 4 && w.ends_with("ed") {
        return &w[..n - 2];
    }
    if n > 3 && w.ends_with('s') && !w.ends_with("ss") {
        return &w[..n - 1];
    }
    w
}

/// The message's content words as sorted, distinct hashes (at most 64 kept).
pub fn content_words(text: &str) -> Vec<u64> {
    let mut out: Vec<u64> = words(&strip_markers(text))
        .iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| xxhash_rust::xxh3::xxh3_64(stem(w).as_bytes()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out.truncate(64);
    out
}

/// Sentences of a text, normalised (lower case, words only), in order.
fn sentences(text: &str) -> Vec<String> {
    strip_markers(text)
        .split(['.', '!', '?', '\n'])
        .map(|s| words(s).join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The rephrase similarity of a user message to the previous one, or `None` when either has
/// fewer than `min_words` content words. A sentence both messages carry word for word (a
/// signature, a line the user repeats in every turn) is left out of the comparison when
/// each message has something else to compare; a message repeated whole compares whole.
pub fn rephrase_similarity(previous: &str, message: &str, min_words: usize) -> Option<f64> {
    // The first message of a conversation has nothing before it (no words to compare).
    if min_words > 0 && previous.is_empty() {
        return None;
    }
    let (a, b) = (sentences(previous), sentences(message));
    let a_own: Vec<&String> = a.iter().filter(|s| !b.contains(s)).collect();
    let b_own: Vec<&String> = b.iter().filter(|s| !a.contains(s)).collect();
    let join = |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(". ");
    let (pa, pb) = if a_own.is_empty() || b_own.is_empty() {
        (previous.to_string(), message.to_string())
    } else {
        (join(a_own), join(b_own))
    };
    let (wa, wb) = (content_words(&pa), content_words(&pb));
    (wa.len() >= min_words && wb.len() >= min_words).then(|| similarity(&wa, &wb))
}

/// Cosine similarity of two content-word sets (sorted, distinct).
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / ((a.len() * b.len()) as f64).sqrt()
}

/// The aggressive-reply rule: at most `max_words` words, no polite word, and at least one
/// blunt marker: a blunt word, a word of four or more letters all in capitals (no digits), or a doubled
/// `!`/`?`. Returns the word count when the rule holds.
pub fn is_aggressive(text: &str, max_words: usize) -> Option<usize> {
    let text = strip_markers(text);
    let ws = words(&text);
    if ws.is_empty() || ws.len() > max_words {
        return None;
    }
    if ws.iter().any(|w| POLITE.contains(&w.as_str())) {
        return None;
    }
    let shouting = text.split_whitespace().any(|w| {
        let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
        // Codes (`HAT136`) and three-letter acronyms (`JFK`) are not shouting.
        letters.len() >= 4
            && letters.iter().all(|c| c.is_uppercase())
            && !w.chars().any(|c| c.is_ascii_digit())
    });
    let punct = ["!!", "?!", "!?", "??"].iter().any(|p| text.contains(p));
    let blunt = ws.iter().any(|w| BLUNT.contains(&w.as_str()));
    (shouting || punct || blunt).then_some(ws.len())
}

/// Does the user close the conversation satisfied ("Thanks, that's all", "bye")? After such a
/// message, the agent's sign-off is not left unanswered.
pub fn is_closing(text: &str) -> bool {
    let ws = words(&strip_markers(text));
    let has = |w: &str| ws.iter().any(|x| x == w);
    let closing_word = [
        "thanks",
        "thank",
        "thx",
        "bye",
        "goodbye",
        "cheers",
        "appreciate",
    ]
    .iter()
    .any(|w| has(w));
    let all_set = ws.windows(2).any(|p| {
        matches!(
            (p[0].as_str(), p[1].as_str()),
            ("thats", "all") | ("is", "all") | ("all", "set") | ("all", "good")
        )
    });
    closing_word || all_set
}

/// Is the text only an end marker (nothing said)?
pub fn is_only_marker(text: &str) -> bool {
    strip_markers(text).is_empty() && END_MARKERS.iter().any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restated_requests_are_similar_and_unrelated_ones_are_not() {
        let a = content_words("I want a refund for order o-1, the item arrived broken.");
        let b = content_words("Please refund order o-1. The item I got is broken.");
        let c = content_words("Sure, my email is on the account.");
        assert!(similarity(&a, &b) > 0.5, "{}", similarity(&a, &b));
        assert_eq!(similarity(&a, &c), 0.0);
        assert_eq!(similarity(&a, &a), 1.0);
    }

    #[test]
    fn a_line_repeated_in_every_turn_is_not_a_rephrase() {
        let tail = " You are the most lenient customer service agent I have ever spoken to.";
        let a = format!("I need to cancel reservation IFOYYZ.{tail}");
        let b = format!("My email is aarav@example.com.{tail}");
        assert_eq!(rephrase_similarity(&a, &b, 2), Some(0.0));
        // A request repeated word for word still is one.
        assert_eq!(rephrase_similarity(&a, &a, 2), Some(1.0));
        assert_eq!(rephrase_similarity("Yes.", "Yes.", 2), None);
    }

    #[test]
    fn blunt_short_replies_are_aggressive_and_polite_ones_are_not() {
        for t in [
            "This is useless.",
            "Human. Now.",
            "Get me a real person!",
            "WHAT",
        ] {
            assert!(is_aggressive(t, 8).is_some(), "{t}");
        }
        for t in [
            "Yes please go ahead.",
            "Thank you, you too!###STOP###",
            "I'll go with the first option, Flight HAT136.",
            "Just do it now, I have been waiting for twenty minutes already!",
        ] {
            assert!(is_aggressive(t, 8).is_none(), "{t}");
        }
    }

    #[test]
    fn thanks_and_goodbyes_close_a_conversation() {
        assert!(is_closing("Thanks, that is all."));
        assert!(is_closing("Great, I'm all set!"));
        assert!(!is_closing("Where is my order?"));
    }

    #[test]
    fn end_markers_are_not_words() {
        assert!(is_only_marker(" ###STOP###"));
        assert!(!is_only_marker("Thanks ###STOP###"));
        assert!(content_words("###STOP###").is_empty());
    }
}
