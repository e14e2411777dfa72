//! Lists consecutive user-message pairs of a conversation log (NDJSON with
//! `conversation_id`, `event`, `turn`, `text`) with their rephrase similarity: the sample
//! from which `tests/fixtures/tau_rephrase_labels.csv` was hand-labelled.
//!
//! `cargo run -p sequin-signals --example rephrase_pairs -- ../shared/data/tau_bench_airline/events.ndjson`

use std::io::BufRead;

use sequin_signals::text::{content_words, rephrase_similarity};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: rephrase_pairs EVENTS.ndjson");
    let file = std::io::BufReader::new(std::fs::File::open(&path).expect("readable file"));
    let mut previous: Option<(String, String)> = None; // (conversation, text)
    let mut w = csv::Writer::from_writer(std::io::stdout());
    w.write_record([
        "conversation_id",
        "turn",
        "similarity",
        "previous",
        "message",
    ])
    .expect("stdout");
    for line in file.lines() {
        let line = line.expect("readable line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        if v["event"] != "user_message" {
            continue;
        }
        let conv = v["conversation_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let text = v["text"].as_str().unwrap_or_default().to_string();
        if let Some((pc, pt)) = &previous
            && *pc == conv
        {
            let s = rephrase_similarity(pt, &text, 3).unwrap_or(0.0);
            w.write_record([
                conv.as_str(),
                &v["turn"].to_string(),
                &format!("{s:.3}"),
                pt.as_str(),
                text.as_str(),
            ])
            .expect("stdout");
        }
        // As the detector does: a message without content words (only "Yes.", only an end
        // marker) does not replace the previous one.
        if !content_words(&text).is_empty() || previous.as_ref().is_none_or(|(pc, _)| *pc != conv) {
            previous = Some((conv, text));
        }
    }
}
