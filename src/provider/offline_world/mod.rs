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

mod reflect;
mod task;

use async_trait::async_trait;

pub use reflect::reflect;
pub use task::{Case, Join, Style, Wrap, answer, parse_input};

use super::{Completion, CompletionRequest, ModelProvider, ProviderError};

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

    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        super::offline_call("offline_world", self.latency, request, Self::respond).await
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
