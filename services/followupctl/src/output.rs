//! Output: for people by default, JSON for scripts (`--json`).

use serde::Serialize;

/// A command's result, printable both ways.
pub trait Report: Serialize {
    /// The result for people: short lines, figures first.
    fn human(&self) -> String;
}

/// Prints `report` on stdout: as one JSON document with `json`, else for people.
pub fn print<R: Report>(report: &R, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        let text = report.human();
        println!("{}", text.trim_end());
    }
    Ok(())
}
