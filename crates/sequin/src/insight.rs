//! Insight commands: `mine` (and the outcome, funnel, discovery and root-cause commands).

use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sequin_core::time::parse_duration;
use sequin_insight::mine::{
    MineOptions, SequenceDb, absolute_support, prefixspan, store_sequences,
};
use sequin_lang::ast::UnitKind;
use sequin_store::StoreReader;

use crate::cli::{MineArgs, MineFormat};

pub fn mine(a: MineArgs) -> Result<()> {
    if !(a.min_support > 0.0 && a.min_support <= 1.0) {
        bail!(
            "--min-support {}: a share of sequences, above 0 and at most 1 (0.05 = 5%)",
            a.min_support
        );
    }
    let started = Instant::now();
    let unit: UnitKind = a.unit.into();
    let (db, what, from_store) = match (&a.store, &a.spmf) {
        (Some(store), _) => {
            let reader = StoreReader::open(store)
                .with_context(|| format!("opening store {}", store.display()))?;
            let gap = parse_duration(&a.session_gap)
                .map_err(anyhow::Error::msg)
                .context("--session-gap")?;
            (
                store_sequences(&reader, unit, gap, None)?,
                unit.keyword(),
                true,
            )
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
            (
                SequenceDb::parse_spmf(&text, &path.display().to_string())?,
                "sequences",
                false,
            )
        }
        (None, None) => bail!("give --store DIR or --spmf FILE"),
    };
    let loaded = started.elapsed().as_secs_f64();
    let min_support = absolute_support(a.min_support, db.len());
    let max_length = a.max_length.or(if from_store { Some(5) } else { None });
    let patterns = prefixspan(
        &db,
        MineOptions {
            min_support,
            max_length,
        },
    );
    let mined = started.elapsed().as_secs_f64() - loaded;
    let shown = &patterns[..a.limit.unwrap_or(usize::MAX).min(patterns.len())];
    let format = a.format.unwrap_or(if from_store {
        MineFormat::Text
    } else {
        MineFormat::Spmf
    });
    let mut out = BufWriter::new(std::io::stdout().lock());
    let share = |s: u32| s as f64 / db.len().max(1) as f64;
    match format {
        MineFormat::Spmf => {
            for p in shown {
                writeln!(out, "{}", p.spmf(&db))?;
            }
        }
        MineFormat::Text => {
            for p in shown {
                let items: Vec<String> = p
                    .itemsets
                    .iter()
                    .map(|set| {
                        let labels: Vec<&str> = set
                            .iter()
                            .map(|&x| db.labels[x as usize].as_str())
                            .collect();
                        if labels.len() == 1 {
                            labels[0].to_string()
                        } else {
                            format!("({})", labels.join(" "))
                        }
                    })
                    .collect();
                writeln!(
                    out,
                    "{:>9}  {:>6.2}%  {}",
                    p.support,
                    100.0 * share(p.support),
                    items.join(" → ")
                )?;
            }
        }
        MineFormat::Json => {
            let list: Vec<serde_json::Value> = shown
                .iter()
                .map(|p| {
                    let mut v = serde_json::json!({
                        "pattern": p.itemsets.iter().map(|set| {
                            set.iter().map(|&x| db.labels[x as usize].clone()).collect::<Vec<_>>()
                        }).collect::<Vec<_>>(),
                        "support": p.support,
                        "share": share(p.support),
                    });
                    if from_store && let Some(c) = p.sequence_criterion(&db) {
                        v["criterion"] = c.into();
                    }
                    v
                })
                .collect();
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({
                    "sequences": db.len(),
                    "unit": if from_store { Some(unit.keyword()) } else { None },
                    "min_support": min_support,
                    "max_length": max_length,
                    "patterns_found": patterns.len(),
                    "patterns": list,
                }),
            )?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    eprintln!(
        "{} patterns with support ≥ {min_support} of {} {what} (read {loaded:.3}s, mined {mined:.4}s{})",
        patterns.len(),
        db.len(),
        match max_length {
            Some(l) => format!(", at most {l} items"),
            None => String::new(),
        }
    );
    Ok(())
}
