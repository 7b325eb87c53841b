//! Example files as people keep them: JSON Lines (one `{"id", "input", "expected", "meta"}`
//! object a line) or CSV with a header row (`input` required; `id` and `expected` optional;
//! any other column goes into `meta` as text). Pure parsing; the caller reads the file.

use crate::api::rest::{ExampleBody, ExampleId};

/// At most this many bytes are read from an examples file (the server caps a job at 1000
/// examples of bounded size; this keeps a wrong file from eating memory first).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an examples file could not be read; the message names the line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExamplesFileError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("csv header must name an `input` column (found: {0})")]
    NoInputColumn(String),
    #[error("the file holds no examples")]
    Empty,
}

/// The format, from the file name (`.csv` is CSV, anything else JSON Lines).
pub fn is_csv(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
}

/// Parses JSON Lines; blank lines are skipped.
pub fn parse_jsonl(text: &str) -> Result<Vec<ExampleBody>, ExamplesFileError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let example: ExampleBody =
            serde_json::from_str(line).map_err(|e| ExamplesFileError::Line {
                line: n + 1,
                message: e.to_string(),
            })?;
        out.push(example);
    }
    if out.is_empty() {
        return Err(ExamplesFileError::Empty);
    }
    Ok(out)
}

/// Parses CSV (RFC 4180: `"` quotes, `""` escapes, quoted fields may hold commas and newlines).
pub fn parse_csv(text: &str) -> Result<Vec<ExampleBody>, ExamplesFileError> {
    let rows = csv_rows(text)?;
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err(ExamplesFileError::Empty);
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let input =
        column("input").ok_or_else(|| ExamplesFileError::NoInputColumn(header.join(",")))?;
    let (id, expected) = (column("id"), column("expected"));
    let mut out = Vec::new();
    for (line, row) in rows {
        if row.len() == 1 && row[0].is_empty() {
            continue;
        }
        if row.len() != header.len() {
            return Err(ExamplesFileError::Line {
                line,
                message: format!("{} fields, the header has {}", row.len(), header.len()),
            });
        }
        let mut meta = serde_json::Map::new();
        for (i, value) in row.iter().enumerate() {
            if Some(i) != id && Some(i) != expected && i != input {
                meta.insert(header[i].clone(), serde_json::Value::String(value.clone()));
            }
        }
        out.push(ExampleBody {
            id: id
                .map(|i| row[i].clone())
                .filter(|s| !s.is_empty())
                .map(ExampleId::Text),
            input: row[input].clone(),
            expected: expected.map(|i| row[i].clone()),
            meta: Some(meta).filter(|m| !m.is_empty()),
        });
    }
    if out.is_empty() {
        return Err(ExamplesFileError::Empty);
    }
    Ok(out)
}

/// Splits CSV text into rows of fields, each with the line number it starts on.
fn csv_rows(text: &str) -> Result<Vec<(usize, Vec<String>)>, ExamplesFileError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push((row_line, std::mem::take(&mut row)));
                line += 1;
                row_line = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(ExamplesFileError::Line {
            line: row_line,
            message: "unterminated quoted field".into(),
        });
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(e: &ExampleBody) -> Option<String> {
        match &e.id {
            Some(ExampleId::Text(s)) => Some(s.clone()),
            Some(ExampleId::Number(n)) => Some(n.to_string()),
            None => None,
        }
    }

    #[test]
    fn csv_quotes_hold_commas_newlines_and_escaped_quotes() {
        let text =
            "id,input,expected,topic\r\n1,\"a, b\",\"say \"\"hi\"\"\",x\n2,\"two\nlines\",,y\n";
        let rows = parse_csv(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(id(&rows[0]).as_deref(), Some("1"));
        assert_eq!(rows[0].input, "a, b");
        assert_eq!(rows[0].expected.as_deref(), Some("say \"hi\""));
        assert_eq!(rows[0].meta.as_ref().unwrap()["topic"], "x");
        assert_eq!(rows[1].input, "two\nlines");
        assert_eq!(rows[1].expected.as_deref(), Some(""));
    }

    #[test]
    fn csv_without_input_column_or_with_ragged_rows_is_rejected() {
        assert!(matches!(
            parse_csv("question,answer\nq,a\n"),
            Err(ExamplesFileError::NoInputColumn(_))
        ));
        assert_eq!(
            parse_csv("input,expected\na,b\nc\n").unwrap_err(),
            ExamplesFileError::Line {
                line: 3,
                message: "1 fields, the header has 2".into()
            }
        );
        assert!(parse_csv("input\n\"open\n").is_err());
    }

    #[test]
    fn jsonl_skips_blank_lines_and_names_the_bad_line() {
        let rows =
            parse_jsonl("{\"id\":7,\"input\":\"a\",\"expected\":\"b\"}\n\n{\"input\":\"c\"}\n")
                .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(id(&rows[0]).as_deref(), Some("7"));
        let err = parse_jsonl("{\"input\":\"a\"}\n{\"inptu\":\"b\"}\n").unwrap_err();
        assert!(
            matches!(err, ExamplesFileError::Line { line: 2, .. }),
            "{err}"
        );
        assert_eq!(parse_jsonl("\n").unwrap_err(), ExamplesFileError::Empty);
    }
}
