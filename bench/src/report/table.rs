//! The one results table: rows appended to a file as each part runs
//! (`SEALCAM_BENCH_TABLE`), printed at the end as Markdown for
//! `docs/ref/benchmarks.md`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// One row: what was measured, the result, its goal and the verdict ("—"
/// where a figure has no goal).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub figure: String,
    pub result: String,
    pub goal: String,
    pub verdict: String,
}

/// Shown in the goal and verdict columns of a figure without a goal.
pub const NONE: &str = "—";

impl Row {
    /// A figure without a goal, shown for scale or comparison.
    pub fn note(figure: impl Into<String>, result: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            result: result.into(),
            goal: NONE.into(),
            verdict: NONE.into(),
        }
    }

    /// A figure held to `goal`, with its verdict.
    pub fn judged(
        figure: impl Into<String>,
        result: impl Into<String>,
        goal: impl Into<String>,
        verdict: impl ToString,
    ) -> Self {
        Self {
            figure: figure.into(),
            result: result.into(),
            goal: goal.into(),
            verdict: verdict.to_string(),
        }
    }

    /// The log line printed as the row comes.
    pub fn log_line(&self) -> String {
        format!(
            "   {}: {} (goal: {}; {})",
            self.figure, self.result, self.goal, self.verdict
        )
    }

    fn to_tsv(&self) -> String {
        // A tab or newline inside a cell would break the row apart.
        let cell = |s: &str| s.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\n",
            cell(&self.figure),
            cell(&self.result),
            cell(&self.goal),
            cell(&self.verdict)
        )
    }

    fn from_tsv(line: &str) -> Option<Self> {
        let mut cells = line.split('\t');
        Some(Self {
            figure: cells.next()?.into(),
            result: cells.next()?.into(),
            goal: cells.next()?.into(),
            verdict: cells.next()?.into(),
        })
    }
}

/// Appends `rows` to the table file and prints each one's log line.
pub fn append(table: &Path, rows: &[Row]) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(table)?;
    for row in rows {
        file.write_all(row.to_tsv().as_bytes())?;
        println!("{}", row.log_line());
    }
    Ok(())
}

/// The rows of a table file.
pub fn read(table: &Path) -> io::Result<Vec<Row>> {
    let text = std::fs::read_to_string(table)?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(Row::from_tsv)
        .collect())
}

/// The rows as a Markdown table under the heading line `title`.
pub fn markdown(title: &str, rows: &[Row]) -> String {
    let mut out =
        format!("\n== {title}\n\n| figure | result | goal | |\n| --- | --- | --- | --- |\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.figure, r.result, r.goal, r.verdict
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_file_and_render_as_markdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table");
        let rows = [
            Row::judged("p99 to ack", "120 ms (110–130)", "≤ 250 ms", "met"),
            Row::note("for scale", "a\tb"),
        ];
        append(&path, &rows).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back[0], rows[0]);
        assert_eq!(back[1].result, "a b");
        let md = markdown("t", &back);
        assert!(md.contains("| figure | result | goal | |\n| --- | --- | --- | --- |\n"));
        assert!(md.contains("| p99 to ack | 120 ms (110–130) | ≤ 250 ms | met |\n"));
        assert!(md.contains("| for scale | a b | — | — |\n"));
    }
}
