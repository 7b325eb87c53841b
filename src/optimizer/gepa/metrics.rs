//! Metrics that return a score in [0, 1] AND feedback text (GEPA's μ_f): strict match, exact
//! match (the original's: lowercase, collapsed whitespace), contains,
//! regex, token F1, JSON-schema validity (a hand-written subset: type, required, properties,
//! items, enum) and an LLM-judge rubric (the server's [`Judge`], in [`super::judge`]).
//! Every failing verdict's feedback states the expected answer plainly (`Expected answer: …`),
//! so reflection can read what the right output looks like.

use serde_json::Value;

pub use super::judge::{Judge, parse_verdict};
use crate::domain::Example;

/// A metric by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    StrictMatch,
    ExactMatch,
    Contains,
    Regex,
    TokenF1,
    JsonSchema,
    LlmJudge,
}

impl Metric {
    pub fn parse(name: &str) -> Option<Metric> {
        Some(match name {
            "strict_match" => Metric::StrictMatch,
            "exact_match" => Metric::ExactMatch,
            "contains" => Metric::Contains,
            "regex_pass" | "regex" => Metric::Regex,
            "token_f1" => Metric::TokenF1,
            "json_schema" => Metric::JsonSchema,
            "llm_judge" => Metric::LlmJudge,
            _ => return None,
        })
    }
}

/// A score and the feedback that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub feedback: String,
}

/// The original's normalisation: lowercase and collapse whitespace (which also trims), nothing
/// else: punctuation and inner formatting still count.
fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `normalize(a) == normalize(b)` without allocating when both are ASCII (every rollout scores
/// with it; ASCII lowercasing is per byte, so comparing word by word is the same test). Other
/// text takes `normalize` itself: Unicode lowercasing depends on context (a final sigma).
fn same_normalized(a: &str, b: &str) -> bool {
    if !(a.is_ascii() && b.is_ascii()) {
        return normalize(a) == normalize(b);
    }
    let mut words = b.split_whitespace();
    a.split_whitespace().all(|word| {
        words
            .next()
            .is_some_and(|other| word.eq_ignore_ascii_case(other))
    }) && words.next().is_none()
}

/// Adds the expected answer on its own line (when the example has one) and the example's worked
/// solution (`meta.additional_context` or `meta.explanation`).
pub fn with_context(mut feedback: String, example: &Example) -> String {
    if let Some(expected) = &example.expected
        && !feedback.contains("\nExpected answer: ")
    {
        feedback.push_str(&format!("\nExpected answer: {}", expected.trim()));
    }
    for key in ["additional_context", "explanation"] {
        if let Some(Value::String(extra)) = example.meta.get(key) {
            feedback.push_str(&format!(" Context: {extra}"));
        }
    }
    feedback
}

fn need_expected(example: &Example) -> Result<&str, Scored> {
    example.expected.as_deref().ok_or_else(|| Scored {
        score: 0.0,
        feedback: "This example has no expected answer to compare with.".into(),
    })
}

/// A failed comparison: the verdict, then the expected answer and the response, each on its own
/// line and verbatim.
fn mismatch(what: &str, expected: &str, output: &str, example: &Example) -> Scored {
    Scored {
        score: 0.0,
        feedback: with_context(
            format!(
                "Incorrect ({what}).\nExpected answer: {}\nResponse: {}",
                expected.trim(),
                output.trim()
            ),
            example,
        ),
    }
}

/// Exact equality after trimming surrounding whitespace; case, punctuation and inner
/// whitespace all count.
pub fn strict_match(output: &str, example: &Example) -> Scored {
    let expected = match need_expected(example) {
        Ok(e) => e,
        Err(s) => return s,
    };
    if output.trim() == expected.trim() {
        Scored {
            score: 1.0,
            feedback: format!("Correct: the response is exactly {:?}.", expected.trim()),
        }
    } else {
        mismatch(
            "must match exactly, case-sensitive",
            expected,
            output,
            example,
        )
    }
}

/// The original's exact match: equal after lowercasing and collapsing whitespace.
pub fn exact_match(output: &str, example: &Example) -> Scored {
    let expected = match need_expected(example) {
        Ok(e) => e,
        Err(s) => return s,
    };
    if same_normalized(output, expected) {
        Scored {
            score: 1.0,
            feedback: format!("Correct: the answer is {expected:?}."),
        }
    } else {
        mismatch("ignoring case and spacing", expected, output, example)
    }
}

pub fn contains(output: &str, example: &Example) -> Scored {
    let expected = match need_expected(example) {
        Ok(e) => e,
        Err(s) => return s,
    };
    if normalize(output).contains(&normalize(expected)) {
        Scored {
            score: 1.0,
            feedback: format!("The response contains the correct answer {expected:?}."),
        }
    } else {
        Scored {
            score: 0.0,
            feedback: with_context(
                format!("The response does not contain the correct answer {expected:?}."),
                example,
            ),
        }
    }
}

pub fn regex_pass(output: &str, example: &Example) -> Scored {
    let pattern = match example.meta.get("pattern") {
        Some(Value::String(p)) => p.as_str(),
        _ => match need_expected(example) {
            Ok(e) => e,
            Err(s) => return s,
        },
    };
    match regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
    {
        Err(_) => Scored {
            score: 0.0,
            feedback: format!("The pattern {pattern:?} is not a valid regular expression."),
        },
        Ok(re) if re.is_match(output) => Scored {
            score: 1.0,
            feedback: format!("The response matches /{pattern}/."),
        },
        Ok(_) => Scored {
            score: 0.0,
            feedback: with_context(
                format!("The response does not match the required pattern /{pattern}/."),
                example,
            ),
        },
    }
}

fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

pub fn token_f1(output: &str, example: &Example) -> Scored {
    let expected = match need_expected(example) {
        Ok(e) => e,
        Err(s) => return s,
    };
    let got = tokens(output);
    let want = tokens(expected);
    let mut remaining = want.clone();
    let mut common = 0usize;
    for t in &got {
        if let Some(i) = remaining.iter().position(|w| w == t) {
            remaining.swap_remove(i);
            common += 1;
        }
    }
    let score = if common == 0 {
        0.0
    } else {
        let p = common as f64 / got.len() as f64;
        let r = common as f64 / want.len() as f64;
        2.0 * p * r / (p + r)
    };
    let missing: Vec<&str> = remaining.iter().map(String::as_str).collect();
    let feedback = if missing.is_empty() && got.len() == want.len() {
        "The response has exactly the expected tokens.".to_string()
    } else {
        with_context(
            format!(
                "Token F1 {score:.2} against {expected:?}; missing tokens: [{}]; the response had {} tokens for {} expected.",
                missing.join(", "),
                got.len(),
                want.len()
            ),
            example,
        )
    };
    Scored { score, feedback }
}

/// Strips a surrounding Markdown code fence.
fn unfence(s: &str) -> &str {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.split_once('\n').map_or("", |(_, body)| body);
        return rest.trim_end().strip_suffix("```").unwrap_or(rest).trim();
    }
    t
}

/// Checks `value` against a JSON-schema subset; returns the first violation.
fn check_schema(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    if let Some(Value::String(ty)) = schema.get("type") {
        let ok = match ty.as_str() {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !ok {
            return Err(format!("{path} should be of type {ty}"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        return Err(format!(
            "{path} must be one of {}",
            Value::Array(options.clone())
        ));
    }
    if let (Some(Value::Array(required)), Some(obj)) = (schema.get("required"), value.as_object()) {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                return Err(format!("{path} is missing the required key {key:?}"));
            }
        }
    }
    if let (Some(Value::Object(props)), Some(obj)) = (schema.get("properties"), value.as_object()) {
        for (key, sub) in props {
            if let Some(v) = obj.get(key) {
                check_schema(v, sub, &format!("{path}.{key}"))?;
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            check_schema(v, items, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

pub fn json_schema(output: &str, example: &Example) -> Scored {
    let value: Value = match serde_json::from_str(unfence(output)) {
        Ok(v) => v,
        Err(err) => {
            return Scored {
                score: 0.0,
                feedback: with_context(
                    format!("The response is not valid JSON ({err}). Answer with JSON only."),
                    example,
                ),
            };
        }
    };
    let schema = match example.meta.get("schema") {
        Some(s) => s.clone(),
        None => example
            .expected
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or(Value::Null),
    };
    match check_schema(&value, &schema, "$") {
        Ok(()) => Scored {
            score: 1.0,
            feedback: "The response is valid JSON matching the schema.".into(),
        },
        Err(violation) => Scored {
            score: 0.0,
            feedback: with_context(
                format!("The JSON does not match the schema: {violation}."),
                example,
            ),
        },
    }
}

/// Scores with a deterministic metric; `None` for the LLM judge (see [`Judge`]).
pub fn score_sync(metric: Metric, output: &str, example: &Example) -> Option<Scored> {
    Some(match metric {
        Metric::StrictMatch => strict_match(output, example),
        Metric::ExactMatch => exact_match(output, example),
        Metric::Contains => contains(output, example),
        Metric::Regex => regex_pass(output, example),
        Metric::TokenF1 => token_f1(output, example),
        Metric::JsonSchema => json_schema(output, example),
        Metric::LlmJudge => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(expected: &str) -> Example {
        Example {
            id: "1".into(),
            input: "q".into(),
            expected: Some(expected.into()),
            meta: Default::default(),
        }
    }

    #[test]
    fn comparing_word_by_word_agrees_with_normalising() {
        let texts = [
            "",
            " ",
            "paris",
            "Paris",
            "PARIS ",
            " paris\tof  france",
            "paris of france",
            "paris\u{b}of france",
            "paris of francE.",
            "paris of",
            "ΟΔΟΣ",
            "οδος",
            "οδοσ",
            "Straße",
            "strasse",
            "a  b",
            "a b c",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(
                    same_normalized(a, b),
                    normalize(a) == normalize(b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn exact_match_lowercases_and_collapses_whitespace_only() {
        assert_eq!(
            exact_match(" Paris  of\tFrance ", &ex("paris of france")).score,
            1.0
        );
        // Punctuation counts, as in the original.
        assert_eq!(exact_match("Paris.", &ex("paris")).score, 0.0);
        let miss = exact_match("Lyon", &ex("Paris"));
        assert_eq!(miss.score, 0.0);
        assert!(
            miss.feedback
                .contains("\nExpected answer: Paris\nResponse: Lyon")
        );
    }

    #[test]
    fn strict_match_is_case_sensitive_after_trimming() {
        assert_eq!(strict_match("  PARIS\n", &ex("PARIS")).score, 1.0);
        let miss = strict_match("paris", &ex("PARIS"));
        assert_eq!(miss.score, 0.0);
        assert!(
            miss.feedback.contains("Expected answer: PARIS"),
            "{}",
            miss.feedback
        );
        assert_eq!(strict_match("a  b", &ex("a b")).score, 0.0);
    }

    #[test]
    fn every_failing_metric_states_the_expected_answer() {
        let e = ex("4");
        for metric in [
            Metric::StrictMatch,
            Metric::ExactMatch,
            Metric::Contains,
            Metric::TokenF1,
            Metric::Regex,
        ] {
            let v = score_sync(metric, "five", &e).unwrap();
            assert!(v.score < 1.0);
            assert!(
                v.feedback.contains("Expected answer: 4"),
                "{metric:?}: {}",
                v.feedback
            );
        }
    }

    #[test]
    fn contains_regex_and_f1_give_feedback() {
        assert_eq!(contains("It is 4.", &ex("4")).score, 1.0);
        assert!(
            contains("five", &ex("4"))
                .feedback
                .contains("does not contain")
        );
        assert_eq!(regex_pass("order 123", &ex(r"\d{3}")).score, 1.0);
        assert!(regex_pass("x", &ex("(")).feedback.contains("not a valid"));
        let f1 = token_f1("the cat sat", &ex("the cat"));
        assert!((f1.score - 0.8).abs() < 1e-9);
        let miss = token_f1("a dog", &ex("the cat"));
        assert!(
            miss.feedback.contains("missing tokens: [the, cat]") || miss.feedback.contains("cat")
        );
    }

    #[test]
    fn json_schema_names_the_violation() {
        let mut example = ex("");
        example.meta.insert(
            "schema".into(),
            serde_json::json!({"type": "object", "required": ["label"],
                "properties": {"label": {"enum": ["pos", "neg"]}}}),
        );
        assert_eq!(
            json_schema("```json\n{\"label\": \"pos\"}\n```", &example).score,
            1.0
        );
        let bad = json_schema(r#"{"label": "meh"}"#, &example);
        assert!(bad.feedback.contains("$.label must be one of"));
        let missing = json_schema("{}", &example);
        assert!(
            missing
                .feedback
                .contains("missing the required key \"label\"")
        );
        assert!(
            json_schema("nope", &example)
                .feedback
                .contains("not valid JSON")
        );
    }

    #[test]
    fn judge_verdicts_are_parsed() {
        let v = parse_verdict("Misses the date.\nSCORE: 7");
        assert_eq!(v.score, 0.7);
        assert_eq!(v.feedback, "Misses the date.");
        assert_eq!(parse_verdict("no idea").score, 0.0);
    }
}
