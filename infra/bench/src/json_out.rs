//! Bench results as JSON for `infra/charts.py` (shared by the bench
//! binaries through `#[path]`; a few values need no JSON crate).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A JSON value, as much of it as the benches write.
#[derive(Clone)]
pub enum Value {
    Num(f64),
    Int(u64),
    Str(String),
    Bool(bool),
    Arr(Vec<Value>),
    Obj(Vec<(&'static str, Value)>),
}

impl Value {
    fn write(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent + 1);
        match self {
            Value::Num(n) if n.is_finite() => {
                let _ = write!(out, "{n:.3}");
            }
            Value::Num(_) => out.push_str("null"),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Str(s) => string(out, s),
            Value::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&pad);
                    item.write(out, indent + 1);
                }
                if !items.is_empty() {
                    out.push('\n');
                    out.push_str(&"  ".repeat(indent));
                }
                out.push(']');
            }
            Value::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&pad);
                    string(out, key);
                    out.push_str(": ");
                    value.write(out, indent + 1);
                }
                if !fields.is_empty() {
                    out.push('\n');
                    out.push_str(&"  ".repeat(indent));
                }
                out.push('}');
            }
        }
    }
}

fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `value` to `$BENCH_OUT_DIR/<name>` (default `.local/bench`).
pub fn write(name: &str, value: &Value) -> std::io::Result<PathBuf> {
    let dir = std::env::var("BENCH_OUT_DIR").unwrap_or_else(|_| ".local/bench".into());
    std::fs::create_dir_all(&dir)?;
    let path = Path::new(&dir).join(name);
    let mut text = String::new();
    value.write(&mut text, 0);
    text.push('\n');
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Now, to the minute: `2026-11-28 03:05 UTC`.
pub fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_else(|_| "?".into())
}

/// The 1-minute load average (`?` where /proc/loadavg is unreadable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
