//! `OfflineWorld`: an offline, deterministic world whose task model responds to the prompt, so an
//! offline GEPA run can really improve one. It owns three things:
//!
//! - **the task model**: an input `"<category>: <content>"` is answered with its content,
//!   formatted only by the rules the system prompt states (case, wrapping, word separator, final
//!   period; `For <category> inputs, …` overrides `Always …`); any other input is echoed, except
//!   that `When the input is "X", answer "Y".` rules are obeyed;
//! - **the reflection operator**: given a reflection prompt (ours or the reference library's:
//!   the current instruction in the first ``` fence, then `# Example N` records with `## Inputs`
//!   and `## Feedback` carrying `Expected answer: …`), it infers from each failed example which
//!   formatting reaches the expected answer and rewrites the instruction's rules, generalising
//!   eagerly (a first rule is written for every category; a conflict adds a category rule), and
//!   avoids repeating a proposal the prompt lists as rejected;
//! - **the packs** (`world_*`, in `optimizer::datasets`) whose hidden rules differ per category.
//!
//! A request is a reflection when its last user message contains a fenced instruction and
//! `# Example` records; everything else is a task call.

use async_trait::async_trait;

use super::{Completion, CompletionRequest, ModelProvider, ProviderError};

/// Letter case of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    AsGiven,
    Upper,
    Lower,
    Title,
}

/// What surrounds an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    None,
    Brackets,
    Quotes,
    Parens,
}

/// Between the words of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    Space,
    Hyphen,
    Underscore,
}

/// One complete formatting of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub case: Case,
    pub wrap: Wrap,
    pub join: Join,
    pub period: bool,
}

impl Style {
    pub const DEFAULT: Style = Style {
        case: Case::AsGiven,
        wrap: Wrap::None,
        join: Join::Space,
        period: false,
    };

    /// Formats `content` (words separated by whitespace).
    pub fn apply(&self, content: &str) -> String {
        let words: Vec<String> = content
            .split_whitespace()
            .map(|w| match self.case {
                Case::AsGiven => w.to_string(),
                Case::Upper => w.to_uppercase(),
                Case::Lower => w.to_lowercase(),
                Case::Title => {
                    let mut c = w.chars();
                    c.next().map_or(String::new(), |f| {
                        f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()
                    })
                }
            })
            .collect();
        let sep = match self.join {
            Join::Space => " ",
            Join::Hyphen => "-",
            Join::Underscore => "_",
        };
        let body = words.join(sep);
        let mut out = match self.wrap {
            Wrap::None => body,
            Wrap::Brackets => format!("[{body}]"),
            Wrap::Quotes => format!("\"{body}\""),
            Wrap::Parens => format!("({body})"),
        };
        if self.period {
            out.push('.');
        }
        out
    }
}

/// A formatting dimension a rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Case(Case),
    Wrap(Wrap),
    Join(Join),
    Period(bool),
}

impl Dim {
    fn kind(self) -> u8 {
        match self {
            Dim::Case(_) => 0,
            Dim::Wrap(_) => 1,
            Dim::Join(_) => 2,
            Dim::Period(_) => 3,
        }
    }

    /// The rule's wording (the model reads these words back).
    fn phrase(self) -> &'static str {
        match self {
            Dim::Case(Case::Upper) => "write the answer in uppercase",
            Dim::Case(Case::Lower) => "write the answer in lowercase",
            Dim::Case(Case::Title) => "write the answer in title case",
            Dim::Case(Case::AsGiven) => "keep the letter case of the input",
            Dim::Wrap(Wrap::Brackets) => "wrap the answer in square brackets",
            Dim::Wrap(Wrap::Quotes) => "wrap the answer in double quotes",
            Dim::Wrap(Wrap::Parens) => "wrap the answer in parentheses",
            Dim::Wrap(Wrap::None) => "do not wrap the answer in anything",
            Dim::Join(Join::Hyphen) => "join the words with hyphens",
            Dim::Join(Join::Underscore) => "join the words with underscores",
            Dim::Join(Join::Space) => "separate the words with spaces",
            Dim::Period(true) => "finish the answer with a full stop",
            Dim::Period(false) => "never finish the answer with a full stop",
        }
    }

    fn set(self, style: &mut Style) {
        match self {
            Dim::Case(c) => style.case = c,
            Dim::Wrap(w) => style.wrap = w,
            Dim::Join(j) => style.join = j,
            Dim::Period(p) => style.period = p,
        }
    }

    /// The dimension a sentence states, if any (the model's reading of a rule).
    fn read(sentence: &str) -> Option<Dim> {
        let s = sentence.to_lowercase();
        let has = |w: &str| s.contains(w);
        Some(
            if has("uppercase") || has("upper case") || has("capital letters") {
                Dim::Case(Case::Upper)
            } else if has("lowercase") || has("lower case") {
                Dim::Case(Case::Lower)
            } else if has("title case") {
                Dim::Case(Case::Title)
            } else if has("letter case of the input") {
                Dim::Case(Case::AsGiven)
            } else if has("square brackets") {
                Dim::Wrap(Wrap::Brackets)
            } else if has("double quotes") {
                Dim::Wrap(Wrap::Quotes)
            } else if has("parentheses") {
                Dim::Wrap(Wrap::Parens)
            } else if has("do not wrap") {
                Dim::Wrap(Wrap::None)
            } else if has("hyphens") {
                Dim::Join(Join::Hyphen)
            } else if has("underscores") {
                Dim::Join(Join::Underscore)
            } else if has("with spaces") {
                Dim::Join(Join::Space)
            } else if has("never finish the answer with a full stop") {
                Dim::Period(false)
            } else if has("full stop") {
                Dim::Period(true)
            } else {
                return None;
            },
        )
    }
}

const CASES: [Case; 4] = [Case::AsGiven, Case::Upper, Case::Lower, Case::Title];
const WRAPS: [Wrap; 4] = [Wrap::None, Wrap::Brackets, Wrap::Quotes, Wrap::Parens];
const JOINS: [Join; 3] = [Join::Space, Join::Hyphen, Join::Underscore];

/// A rule read from an instruction: its scope (`None` = every category) and what it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scope: Option<String>,
    dim: Dim,
}

impl Rule {
    fn sentence(&self) -> String {
        match &self.scope {
            None => format!("Always {}.", self.dim.phrase()),
            Some(c) => format!("For {c} inputs, {}.", self.dim.phrase()),
        }
    }
}

/// Splits an instruction into lines of free text and the rules it states, in order.
fn read_rules(instruction: &str) -> (Vec<String>, Vec<Rule>) {
    let mut free = Vec::new();
    let mut rules = Vec::new();
    for line in instruction.lines() {
        let mut any = false;
        for sentence in line.split(['.', ';']) {
            let sentence = sentence.trim().trim_start_matches(['-', '*']).trim();
            let Some(dim) = Dim::read(sentence) else {
                continue;
            };
            any = true;
            let lower = sentence.to_lowercase();
            let scope = lower.strip_prefix("for ").and_then(|rest| {
                rest.split_once(" inputs")
                    .map(|(c, _)| c.trim().to_string())
                    .filter(|c| !c.is_empty() && !c.contains(' '))
            });
            rules.push(Rule { scope, dim });
        }
        if !any && !line.trim().is_empty() && !is_lookup(line) {
            free.push(line.trim_end().to_string());
        }
    }
    (free, rules)
}

/// `When the input is "X", answer "Y".` rules (the rule-based operator's and memorisation).
fn lookups(instruction: &str) -> Vec<(String, String)> {
    instruction
        .lines()
        .filter_map(|line| {
            let rest = line.trim().trim_start_matches('-').trim();
            let rest = rest.strip_prefix("When the input is ")?;
            let (input, rest) = quoted(rest)?;
            let rest = rest.trim_start().strip_prefix(',')?.trim_start();
            let rest = rest.strip_prefix("answer ")?;
            let (answer, _) = quoted(rest)?;
            Some((input, answer))
        })
        .collect()
}

fn is_lookup(line: &str) -> bool {
    line.trim()
        .trim_start_matches('-')
        .trim()
        .starts_with("When the input is ")
}

/// A leading JSON-style quoted string and the text after it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if !s.starts_with('"') {
        return None;
    }
    let mut escaped = false;
    for (i, ch) in s.char_indices().skip(1) {
        match ch {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                let value: String = serde_json::from_str(&s[..=i]).ok()?;
                return Some((value, &s[i + 1..]));
            }
            _ => escaped = false,
        }
    }
    None
}

/// The category and content of a world input (`"city: new york"`).
pub fn parse_input(input: &str) -> Option<(String, String)> {
    let (cat, content) = input.trim().split_once(':')?;
    let cat = cat.trim().to_lowercase();
    if cat.is_empty() || cat.contains(char::is_whitespace) || content.trim().is_empty() {
        return None;
    }
    Some((cat, content.trim().to_string()))
}

/// The style the rules give a category: the last global rule per dimension, overridden by the
/// last rule scoped to the category.
fn style_for(rules: &[Rule], category: &str) -> Style {
    let mut style = Style::DEFAULT;
    for rule in rules.iter().filter(|r| r.scope.is_none()) {
        rule.dim.set(&mut style);
    }
    for rule in rules
        .iter()
        .filter(|r| r.scope.as_deref() == Some(category))
    {
        rule.dim.set(&mut style);
    }
    style
}

/// The task model: what it answers to `input` under the system prompt `system`.
pub fn answer(system: &str, input: &str) -> String {
    for (when, then) in lookups(system) {
        if when.trim() == input.trim() {
            return then;
        }
    }
    match parse_input(input) {
        Some((category, content)) => {
            let (_, rules) = read_rules(system);
            style_for(&rules, &category).apply(&content)
        }
        None => input.to_string(),
    }
}

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

/// Renders free text then rules, one per line.
fn render(free: &[String], rules: &[Rule], lookups: &[(String, String)]) -> String {
    let mut out: Vec<String> = free.to_vec();
    for r in rules {
        out.push(format!("- {}", r.sentence()));
    }
    for (input, answer) in lookups {
        out.push(format!(
            "- When the input is {}, answer {}.",
            serde_json::Value::from(input.as_str()),
            serde_json::Value::from(answer.as_str())
        ));
    }
    out.join("\n")
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

/// The offline world as a provider (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct OfflineWorld {
    latency: std::time::Duration,
}

impl OfflineWorld {
    pub fn with_latency(latency: std::time::Duration) -> Self {
        OfflineWorld { latency }
    }

    /// The answer to a request, without latency or usage.
    pub fn respond(request: &CompletionRequest) -> String {
        let user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| &*m.content)
            .unwrap_or_default();
        if let Some(text) = reflect(user) {
            return format!("```\n{text}\n```");
        }
        let system = request
            .messages
            .iter()
            .filter(|m| m.role == "system")
            .map(|m| &*m.content)
            .collect::<Vec<_>>()
            .join("\n");
        answer(&system, user)
    }
}

#[async_trait]
impl ModelProvider for OfflineWorld {
    fn name(&self) -> &str {
        "offline_world"
    }

    #[tracing::instrument(
        name = "provider_call",
        skip_all,
        fields(
            otel.name = "provider_call",
            provider = "offline_world",
            model = %request.model,
            attempts = 1,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
        )
    )]
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let text = Self::respond(&request);
        Ok(super::offline_completion(&request, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_model_follows_only_stated_rules() {
        assert_eq!(answer("Be helpful.", "city: new york"), "new york");
        let system = "Be helpful.\n- Always write the answer in uppercase.\n- For animal inputs, write the answer in title case.\n- For animal inputs, wrap the answer in square brackets.";
        assert_eq!(answer(system, "city: new york"), "NEW YORK");
        assert_eq!(answer(system, "animal: red fox"), "[Red Fox]");
        assert_eq!(answer(system, "capital of france?"), "capital of france?");
        let lookup = "- When the input is \"capital of france?\", answer \"paris\".";
        assert_eq!(answer(lookup, "capital of france?"), "paris");
    }

    fn prompt(current: &str, records: &[(&str, &str, &str)]) -> String {
        let mut side = String::new();
        for (n, (input, output, expected)) in records.iter().enumerate() {
            side.push_str(&format!(
                "# Example {}\n## Inputs\n{input}\n\n## Generated Outputs\n{output}\n\n## Feedback\nIncorrect.\nExpected answer: {expected}\nResponse: {output}\n\n",
                n + 1
            ));
        }
        format!(
            "I gave an assistant:\n```\n{current}\n```\n\nRecords:\n```\n{side}\n```\nWrite it."
        )
    }

    #[test]
    fn reflection_generalises_then_adds_category_rules_on_conflict() {
        let p = prompt(
            "Answer the item.",
            &[
                ("city: new york", "new york", "NEW YORK"),
                ("animal: red fox", "red fox", "red-fox"),
                ("tool: hand saw", "hand saw", "Hand Saw"),
            ],
        );
        let text = reflect(&p).unwrap();
        assert!(text.starts_with("Answer the item."), "{text}");
        assert_eq!(answer(&text, "city: new york"), "NEW YORK");
        assert_eq!(answer(&text, "animal: red fox"), "red-fox");
        assert_eq!(answer(&text, "tool: hand saw"), "Hand Saw");
        // Eager: the first rules are global, so an unseen category gets them too (a hasty
        // generalisation the search must correct with more examples).
        assert_eq!(answer(&text, "color: dark blue"), "DARK-BLUE");
    }

    #[test]
    fn reflection_avoids_a_rejected_proposal() {
        let base = prompt("Answer.", &[("city: new york", "new york", "NEW YORK")]);
        let first = reflect(&base).unwrap();
        let with_memory = format!(
            "{base}\n\n## Rejected proposal 1 (scored 0 vs 0 on 1 examples)\n~~~\n{first}\n~~~"
        );
        let second = reflect(&with_memory).unwrap();
        assert_ne!(second, first);
        assert!(second.contains("For city inputs"), "{second}");
    }

    #[test]
    fn the_reference_librarys_prompt_shape_is_read_too() {
        let p = "I provided an assistant with the following instructions to perform a task for me:\n```\nAnswer.\n```\n\nThe following are examples of different task inputs provided to the assistant along with the assistant's response for each of them, and some feedback on how the assistant's response could be better:\n```\n# Example 1\n## Inputs\ncity: new york\n\n## Generated Outputs\nnew york\n\n## Feedback\nIncorrect.\nExpected answer: (new york)\n\n\n```\n\nYour task is to write a new instruction for the assistant.";
        let text = reflect(p).unwrap();
        assert_eq!(answer(&text, "city: new york"), "(new york)");
    }
}
