//! The offline world's reflection operator: reads a reflection prompt (ours or the reference
//! library's), infers from each failed example which formatting reaches the expected answer,
//! and rewrites the instruction's rules ([`reflect`]).

use super::task::{
    CASES, Dim, JOINS, Rule, Style, WRAPS, answer, lookups, parse_input, read_rules, render,
    style_for,
};

/// The styles that turn `content` into `expected`, the fewest changes from `from` first.
fn explain(content: &str, expected: &str, from: Style) -> Option<Style> {
    let mut best: Option<(usize, Style)> = None;
    for case in CASES {
        for wrap in WRAPS {
            for join in JOINS {
                for period in [false, true] {
                    let s = Style {
                        case,
                        wrap,
                        join,
                        period,
                    };
                    if s.apply(content) != expected.trim() {
                        continue;
                    }
                    let changes = usize::from(s.case != from.case)
                        + usize::from(s.wrap != from.wrap)
                        + usize::from(s.join != from.join)
                        + usize::from(s.period != from.period);
                    if best.is_none_or(|(n, _)| changes < n) {
                        best = Some((changes, s));
                    }
                }
            }
        }
    }
    best.map(|(_, s)| s)
}

fn dims_of(s: Style) -> [Dim; 4] {
    [
        Dim::Case(s.case),
        Dim::Wrap(s.wrap),
        Dim::Join(s.join),
        Dim::Period(s.period),
    ]
}

/// One record of a reflective dataset.
#[derive(Debug, Clone, PartialEq)]
struct Evidence {
    input: String,
    expected: Option<String>,
}

/// The first fenced block (the current instruction) and the records of a reflection prompt.
fn read_reflection(prompt: &str) -> Option<(String, Vec<Evidence>, Vec<String>)> {
    let start = prompt.find("```")?;
    let after = &prompt[start + 3..];
    let after = after.split_once('\n').map_or(after, |(_, rest)| rest);
    let end = after.find("```")?;
    let current = after[..end].trim().to_string();
    let rest = &after[end + 3..];
    if !rest.contains("# Example") {
        return None;
    }
    let mut records = Vec::new();
    for block in rest.split("# Example").skip(1) {
        let input = section(block, "Inputs").unwrap_or_default();
        let expected = section(block, "Feedback").and_then(|f| {
            f.lines()
                .find_map(|l| l.trim().strip_prefix("Expected answer:"))
                .map(|e| e.trim().to_string())
        });
        records.push(Evidence { input, expected });
    }
    let rejected = prompt
        .split("## Rejected proposal")
        .skip(1)
        .filter_map(|b| {
            let (_, body) = b.split_once("~~~\n")?;
            let (text, _) = body.split_once("\n~~~")?;
            Some(text.trim().to_string())
        })
        .collect();
    Some((current, records, rejected))
}

/// The text under `## <name>` (or `### <name>`) up to the next heading of that level or a fence.
fn section(block: &str, name: &str) -> Option<String> {
    let marker = format!("## {name}");
    let start = block.find(&marker)? + marker.len();
    let body = &block[start..];
    let body = body.split_once('\n').map_or("", |(_, b)| b);
    let end = body
        .find("\n## ")
        .or_else(|| body.find("\n```"))
        .unwrap_or(body.len());
    Some(body[..end].trim().to_string())
}

/// Rewrites `rules` so `category` gets `target`. `eager`: a dimension no rule covers yet gets a
/// rule for every category (how a hasty editor generalises from one example); otherwise, or on a
/// conflict with such a rule, the category gets its own rule.
fn enforce(rules: &mut Vec<Rule>, category: &str, target: Style, eager: bool) {
    for want in dims_of(target) {
        let kind = usize::from(want.kind());
        if dims_of(style_for(rules, category))[kind] == want {
            continue;
        }
        rules.retain(|r| !(r.scope.as_deref() == Some(category) && r.dim.kind() == want.kind()));
        if dims_of(style_for(rules, category))[kind] == want {
            continue;
        }
        let global = rules
            .iter()
            .any(|r| r.scope.is_none() && r.dim.kind() == want.kind());
        rules.push(Rule {
            scope: (global || !eager).then(|| category.to_string()),
            dim: want,
        });
    }
}

/// The reflection operator: a new instruction for the prompt's records.
pub fn reflect(prompt: &str) -> Option<String> {
    let (current, records, rejected) = read_reflection(prompt)?;
    let propose = |eager: bool| {
        let (free, mut rules) = read_rules(&current);
        let mut memo = lookups(&current);
        // A later record's rule can break an earlier record: a few passes settle them.
        for r in records.iter().chain(&records).chain(&records) {
            let Some(expected) = &r.expected else {
                continue;
            };
            if answer(&render(&free, &rules, &memo), &r.input) == *expected {
                continue;
            }
            match parse_input(&r.input) {
                Some((category, content)) => {
                    let from = style_for(&rules, &category);
                    if let Some(target) = explain(&content, expected, from) {
                        enforce(&mut rules, &category, target, eager);
                    }
                }
                None => {
                    memo.retain(|(i, _)| i.trim() != r.input.trim());
                    memo.push((r.input.trim().to_string(), expected.clone()));
                }
            }
        }
        render(&free, &rules, &memo)
    };
    let first = propose(true);
    if rejected.iter().any(|r| r.trim() == first.trim()) {
        return Some(propose(false));
    }
    Some(first)
}
