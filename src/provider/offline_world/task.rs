//! The offline world's task model and the language of its instructions: the formatting an answer
//! can take ([`Style`]), the rules an instruction states (`Always …`, `For <category> inputs, …`,
//! `When the input is "X", answer "Y".`), reading and writing them, and [`answer`].

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
pub(super) enum Dim {
    Case(Case),
    Wrap(Wrap),
    Join(Join),
    Period(bool),
}

impl Dim {
    pub(super) fn kind(self) -> u8 {
        match self {
            Dim::Case(_) => 0,
            Dim::Wrap(_) => 1,
            Dim::Join(_) => 2,
            Dim::Period(_) => 3,
        }
    }

    /// The rule's wording (the model reads these words back).
    pub(super) fn phrase(self) -> &'static str {
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

    pub(super) fn set(self, style: &mut Style) {
        match self {
            Dim::Case(c) => style.case = c,
            Dim::Wrap(w) => style.wrap = w,
            Dim::Join(j) => style.join = j,
            Dim::Period(p) => style.period = p,
        }
    }

    /// The dimension a sentence states, if any (the model's reading of a rule).
    pub(super) fn read(sentence: &str) -> Option<Dim> {
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

pub(super) const CASES: [Case; 4] = [Case::AsGiven, Case::Upper, Case::Lower, Case::Title];
pub(super) const WRAPS: [Wrap; 4] = [Wrap::None, Wrap::Brackets, Wrap::Quotes, Wrap::Parens];
pub(super) const JOINS: [Join; 3] = [Join::Space, Join::Hyphen, Join::Underscore];

/// A rule read from an instruction: its scope (`None` = every category) and what it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) scope: Option<String>,
    pub(super) dim: Dim,
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
pub(super) fn read_rules(instruction: &str) -> (Vec<String>, Vec<Rule>) {
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
pub(super) fn lookups(instruction: &str) -> Vec<(String, String)> {
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
pub(super) fn style_for(rules: &[Rule], category: &str) -> Style {
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

/// Renders free text then rules, one per line.
pub(super) fn render(free: &[String], rules: &[Rule], lookups: &[(String, String)]) -> String {
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
