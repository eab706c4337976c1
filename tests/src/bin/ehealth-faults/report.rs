//! The one table a run prints, and the details of every failed scenario under it.

use std::io::Write as _;

use crate::{runner::Row, scenario::Form};

/// Writes the table (and the failures' evidence) to stdout.
pub fn print(
    rows: &[Row],
    form: Form,
    seed: u64,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let header = [
        "scenario",
        "commands (accepted)",
        "kills/outages",
        "pending left",
        "lost",
        "duplicated",
        "wrong outcome",
        "failed_with_error",
        "recovery s",
        "chains valid",
        "streams without gaps",
        "result",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let v = &row.verdict;
            vec![
                row.name.clone(),
                format!("{} ({})", row.sent, row.accepted),
                row.faults.clone(),
                v.pending.to_string(),
                v.lost.to_string(),
                v.duplicated.to_string(),
                v.wrong.to_string(),
                v.errored.to_string(),
                row.recovery
                    .map_or_else(|| "timed out".to_owned(), |s| format!("{s:.1}")),
                format!("{}/{}", v.chains_valid, v.streams),
                format!("{}/{}", v.gap_free, v.streams),
                if row.passed() { "ok" } else { "FAIL" }.to_owned(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let line = |cols: &[String]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let form = match form {
        Form::Ci => "--ci",
        Form::Full => "--full",
    };
    writeln!(out)?;
    writeln!(
        out,
        "Fault suite {form} (seed {seed}), {:.0} s",
        elapsed.as_secs_f64()
    )?;
    writeln!(out, "{}", line(&header.map(str::to_owned)))?;
    writeln!(
        out,
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    )?;
    for row in &cells {
        writeln!(out, "{}", line(row))?;
    }
    if form == "--ci" {
        writeln!(
            out,
            "note: --ci: 200–400 commands a scenario (backlog 2,000), 10 worker kills, lead-in 3 s and \
             tail 5 s around outages, pg-stop-90 stops PostgreSQL for 30 s; recovery is timed out after \
             90 s (backlog 600 s)"
        )?;
    }
    writeln!(
        out,
        "note: each scenario has its own database and QUEUE_PREFIX=faults-<scenario>; recovery of a \
         scenario without a fault counts from its last command, of backlog from the worker's start (the \
         drain)"
    )?;
    for row in rows {
        let drain = row.drain.as_ref().map(|d| d.describe(row.accepted));
        let parts: Vec<&str> = [Some(row.note), drain.as_deref()]
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .collect();
        if !parts.is_empty() {
            writeln!(out, "note: {}: {}", row.name, parts.join("; "))?;
        }
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed()).collect();
    writeln!(
        out,
        "{} passed, {} failed",
        rows.len() - failed.len(),
        failed.len()
    )?;
    for row in rows {
        if row.refusals.is_empty() && row.remarks.is_empty() && row.passed() {
            continue;
        }
        writeln!(out, "\n{}:", row.name)?;
        if !row.refusals.is_empty() {
            writeln!(out, "  not accepted: {}", row.refusals)?;
        }
        if let Some(error) = &row.error {
            writeln!(out, "  error: {error}")?;
        }
        for remark in &row.remarks {
            writeln!(out, "  remark: {remark}")?;
        }
        for example in &row.verdict.examples {
            writeln!(out, "  {example}")?;
        }
        write!(out, "{}", row.logs)?;
    }
    Ok(())
}
