//! Reflective mutation inputs and outputs: the reflective dataset (one record per minibatch
//! example: inputs, generated outputs, feedback) rendered as Markdown, the meta-prompt of the
//! paper's App. C (in our words) with its two placeholders, parsing the fenced answer, and the
//! offline rule-based operator used when no reflection model is available.

use super::state::EvalRecord;
use crate::domain::Example;

/// The reflection meta-prompt; `<curr_param>` is the component's text and `<side_info>` the
/// rendered reflective dataset.
pub const META_PROMPT: &str = "I gave an assistant the following instructions for a task:
```
<curr_param>
```

Below are task inputs the assistant received, the assistant's response to each, and feedback on how each response could be better:
```
<side_info>
```

Write a new instruction for the assistant.

Read the inputs carefully and infer the input format and a detailed description of the task.

Read every response and its feedback. Work out what the responses got wrong and how to get them right.

Copy into the new instruction any niche or domain-specific facts the feedback reveals: the assistant will not see these examples again.

If a response used a strategy that generalises, keep it in the instruction.

Reply with the new instruction inside ``` blocks.";

/// One reflective record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub example: &'a Example,
    pub eval: &'a EvalRecord,
}

/// Renders records as `# Example N` with one `##` heading per key.
pub fn render_side_info(records: &[Record<'_>]) -> String {
    let mut out = String::new();
    for (n, r) in records.iter().enumerate() {
        out.push_str(&format!(
            "# Example {}\n## Inputs\n{}\n\n## Generated Outputs\n{}\n\n## Feedback\n{}\n\n",
            n + 1,
            r.example.input.trim(),
            r.eval.output.trim(),
            r.eval.feedback.trim()
        ));
    }
    out.trim_end().to_string()
}

/// The reflection prompt for one component.
pub fn reflection_prompt(current: &str, records: &[Record<'_>]) -> String {
    META_PROMPT
        .replace("<curr_param>", current)
        .replace("<side_info>", &render_side_info(records))
}

/// Appends reflection memory to a reflection prompt: the recent proposals for this parent and
/// component that lost on their minibatch, with their scores, so the model tries something else.
pub fn with_memory(prompt: String, rejected: &[super::state::Rejected]) -> String {
    if rejected.is_empty() {
        return prompt;
    }
    let mut out = prompt;
    out.push_str(
        "\n\nThese earlier proposals for this instruction were tried and rejected (their total score on a minibatch, against the current instruction's); do not propose them again:",
    );
    for (n, r) in rejected.iter().enumerate() {
        out.push_str(&format!(
            "\n\n## Rejected proposal {} (scored {} vs {} on {} examples)\n~~~\n{}\n~~~",
            n + 1,
            r.after,
            r.before,
            r.size,
            r.text.trim()
        ));
    }
    out
}

/// The text between the first and the last ``` fence (a language tag on the opening fence is
/// dropped); the whole answer when there is no complete fence pair.
pub fn parse_fenced(answer: &str) -> String {
    let Some(start) = answer.find("```") else {
        return answer.trim().to_string();
    };
    let after = &answer[start + 3..];
    let Some(end) = after.rfind("```") else {
        // Opening fence only: take what follows it.
        return strip_lang(after).trim().to_string();
    };
    strip_lang(&after[..end]).trim().to_string()
}

fn strip_lang(s: &str) -> &str {
    match s.split_once('\n') {
        Some((first, rest)) if !first.trim().is_empty() && !first.trim().contains(' ') => rest,
        _ => s,
    }
}

/// Offline operator: appends a rule for every failed example, built from its feedback, so a run
/// without a reflection model still explores. Deterministic.
pub fn rule_based(current: &str, records: &[Record<'_>]) -> String {
    let mut text = current.trim_end().to_string();
    for r in records.iter().filter(|r| r.eval.score < 1.0) {
        let rule = match &r.example.expected {
            Some(expected) => format!(
                "- When the input is {:?}, answer {:?}.",
                r.example.input.trim(),
                expected.trim()
            ),
            None => format!("- Avoid this mistake: {}", r.eval.feedback.trim()),
        };
        if !text.contains(&rule) {
            text.push('\n');
            text.push_str(&rule);
        }
    }
    text
}

/// Short lessons from the feedback of failed records.
pub fn lessons(records: &[Record<'_>]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.eval.score < 1.0)
        .map(|r| r.eval.feedback.trim().chars().take(300).collect::<String>())
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Example {
        Example {
            id: "1".into(),
            input: "capital of france?".into(),
            expected: Some("paris".into()),
            meta: Default::default(),
        }
    }

    #[test]
    fn the_prompt_renders_records_and_placeholders() {
        let example = ex();
        let eval = EvalRecord {
            output: "lyon".into(),
            score: 0.0,
            feedback: "expected paris".into(),
            ..EvalRecord::default()
        };
        let prompt = reflection_prompt(
            "Answer briefly.",
            &[Record {
                example: &example,
                eval: &eval,
            }],
        );
        assert!(prompt.contains("```\nAnswer briefly.\n```"));
        assert!(prompt.contains("# Example 1\n## Inputs\ncapital of france?"));
        assert!(prompt.contains("## Feedback\nexpected paris"));
        assert!(!prompt.contains("<side_info>") && !prompt.contains("<curr_param>"));
    }

    #[test]
    fn fenced_answers_are_parsed_leniently() {
        assert_eq!(parse_fenced("Sure:\n```\nNew text.\n```\nbye"), "New text.");
        assert_eq!(parse_fenced("```markdown\nA\nB\n```"), "A\nB");
        assert_eq!(parse_fenced("```\nonly opening"), "only opening");
        assert_eq!(parse_fenced("no fences"), "no fences");
    }

    #[test]
    fn rule_based_operator_adds_rules_for_failures_only_once() {
        let example = ex();
        let bad = EvalRecord {
            output: "lyon".into(),
            score: 0.0,
            feedback: "wrong".into(),
            ..EvalRecord::default()
        };
        let rec = [Record {
            example: &example,
            eval: &bad,
        }];
        let once = rule_based("Answer.", &rec);
        assert!(once.contains("answer \"paris\""));
        assert_eq!(rule_based(&once, &rec), once);
    }
}
