//! `check`, `fmt` and `eval`: the segment language on the command line.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sequin_core::time::{TimeFormat, format_rfc3339, parse_duration, parse_text};
use sequin_engine::Program;
use sequin_engine::batch::{EvalOptions, evaluate};
use sequin_lang::ast::ItemKind;
use sequin_lang::{SegFile, check as check_file, format_file, parse};
use sequin_store::{EventSource, StoreReader};

use crate::cli::{CheckArgs, EvalArgs, FmtArgs, MemberFormat};

/// Reads a segment file; parse errors are rendered against the source.
pub fn load(path: &Path) -> Result<(String, SegFile)> {
    let src = std::fs::read(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .and_then(|b| {
            String::from_utf8(b).with_context(|| format!("{}: not UTF-8 text", path.display()))
        })?;
    match parse(&src) {
        Ok(file) => Ok((src, file)),
        Err(d) => bail!("{}", d.render(&path.display().to_string(), &src).trim_end()),
    }
}

/// The store's names as the checker wants them.
pub fn catalog(store: &Path) -> Result<sequin_lang::Catalog> {
    let reader =
        StoreReader::open(store).with_context(|| format!("opening store {}", store.display()))?;
    let cat = reader.catalog()?;
    Ok(sequin_lang::Catalog::from_store(cat.names, cat.columns))
}

/// Loads and checks; prints every diagnostic; fails on errors.
pub fn load_checked(path: &Path, store: Option<&Path>) -> Result<SegFile> {
    let (src, file) = load(path)?;
    let cat = store.map(catalog).transpose()?;
    let diags = check_file(&file, cat.as_ref());
    let name = path.display().to_string();
    let errors = diags.iter().filter(|d| d.is_error()).count();
    for d in &diags {
        eprint!("{}", d.render(&name, &src));
    }
    if errors > 0 {
        bail!("{name}: {errors} error(s)");
    }
    Ok(file)
}

pub fn check(a: CheckArgs) -> Result<()> {
    let file = load_checked(&a.file, a.store.as_deref())?;
    let segments = file
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Segment)
        .count();
    eprintln!(
        "{}: ok ({} segments, {} outcomes)",
        a.file.display(),
        segments,
        file.items.len() - segments
    );
    Ok(())
}

pub fn fmt(a: FmtArgs) -> Result<()> {
    let (_, file) = load(&a.file)?;
    let text = format_file(&file);
    if a.write {
        std::fs::write(&a.file, text).with_context(|| a.file.display().to_string())?;
    } else {
        print!("{text}");
    }
    Ok(())
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let file = load_checked(&a.segments, None)?;
    let names: Vec<String> = if a.segment.is_empty() {
        file.items
            .iter()
            .filter(|i| i.kind == ItemKind::Segment)
            .map(|i| i.name.name.clone())
            .collect()
    } else {
        a.segment.clone()
    };
    let mut programs = Vec::new();
    for n in &names {
        match file.items.iter().find(|i| i.name.name == *n) {
            Some(i) if i.kind == ItemKind::Segment => {}
            Some(_) => bail!("`{n}` is an outcome; `eval` evaluates segments"),
            None => {
                let known: Vec<&str> = file
                    .items
                    .iter()
                    .filter(|i| i.kind == ItemKind::Segment)
                    .map(|i| i.name.name.as_str())
                    .collect();
                bail!(
                    "no segment named `{n}` in {} (segments: {})",
                    a.segments.display(),
                    known.join(", ")
                );
            }
        }
        programs.push(Program::compile(&file, n).with_context(|| format!("segment `{n}`"))?);
    }
    let as_of = a
        .as_of
        .as_deref()
        .map(|t| parse_text(t, TimeFormat::Auto).map_err(anyhow::Error::msg))
        .transpose()
        .context("--as-of")?;
    let opts = EvalOptions {
        as_of,
        session_gap: parse_duration(&a.session_gap)
            .map_err(anyhow::Error::msg)
            .context("--session-gap")?,
    };
    let reader = StoreReader::open(&a.store)
        .with_context(|| format!("opening store {}", a.store.display()))?;
    let started = Instant::now();
    let mut result = evaluate(&reader, &programs, &opts)?;
    let wall = started.elapsed().as_secs_f64();
    result.segments.sort_by(|x, y| x.name.cmp(&y.name));

    let sink: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| p.display().to_string())?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    match a.format {
        MemberFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(["segment", "unit", "entered_at"])?;
            for seg in &result.segments {
                for m in &seg.members {
                    w.write_record([&seg.name, &m.unit, &format_rfc3339(m.entered_at)])?;
                }
            }
            w.flush()?;
        }
        MemberFormat::Ndjson => {
            for seg in &result.segments {
                for m in &seg.members {
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({
                            "segment": seg.name,
                            "unit": m.unit,
                            "entered_at": format_rfc3339(m.entered_at),
                        }),
                    )?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    out.flush()?;
    let cpu_total: f64 = result.segments.iter().map(|s| s.cpu_seconds).sum();
    for seg in &result.segments {
        // Segments share one pass over the data: apportion wall time by matcher CPU time.
        let share = if cpu_total > 0.0 {
            seg.cpu_seconds / cpu_total
        } else {
            0.0
        };
        eprintln!(
            "{}: {} members of {} units evaluated, {:.3}s",
            seg.name,
            seg.members.len(),
            seg.units,
            wall * share
        );
    }
    eprintln!(
        "evaluated {} segment(s) as of {} in {:.3}s",
        result.segments.len(),
        result
            .as_of
            .map_or("(empty store)".to_string(), format_rfc3339),
        wall
    );
    Ok(())
}
